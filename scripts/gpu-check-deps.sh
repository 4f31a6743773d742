#!/usr/bin/env bash
# Fetches and unpacks what scripts/gpu-check.sh needs to build extract on a machine that has a
# compiler, CMake and a pip torch but no Debian packages and no network: Debian 12's .deb files of
# the extract path's dependencies (fmt, spdlog, oneTBB, LMDB, libjpeg-turbo and the header-only
# nlohmann-json and CLI11), unpacked under DIR/root (DIR: third_party/gpu-deps, git-ignored; carry
# it to the GPU machine with the working tree). OpenCV is left out on purpose: Debian's imgcodecs
# pulls in GDAL, Qt, FFmpeg and more (core + imgproc + imgcodecs: 134 libraries, 207 MiB, over the
# 64 MiB that travels), so the check builds extract with its libjpeg-only decoder
# (VGGCACHE_IMAGE_DECODER=libjpeg; carbike64 is all JPEG).
# Run here (Debian 12, with apt's package lists). Usage: gpu-check-deps.sh [DIR]
set -euo pipefail
dir=${1:-$(cd "$(dirname "$0")/.." && pwd)/third_party/gpu-deps}
PKGS=(libfmt-dev libfmt9 libspdlog-dev libspdlog1.10 libtbb-dev libtbb12 libtbbmalloc2
      libtbbbind-2-5 liblmdb-dev liblmdb0 nlohmann-json3-dev libcli11-dev libjpeg62-turbo-dev libjpeg62-turbo)
rm -rf "$dir"
mkdir -p "$dir/debs" "$dir/root"
# apt-get download writes into the current directory; as root it warns that _apt cannot sandbox it.
(cd "$dir/debs" && apt-get download "${PKGS[@]}" 2>&1 | grep -v "unsandboxed" || true)
for p in "${PKGS[@]}"; do
  compgen -G "$dir/debs/${p}_*.deb" >/dev/null || { echo "gpu-check-deps: $p not downloaded" >&2; exit 1; }
done
for f in "$dir"/debs/*.deb; do dpkg-deb -x "$f" "$dir/root"; done
rm -rf "$dir/root/usr/share/doc" "$dir/root/usr/share/man" "$dir/root/usr/share/lintian"
dpkg-query -W -f='${Package} ${Version}\n' "${PKGS[@]}" >"$dir/installed-here.txt" 2>/dev/null || true
ls "$dir/debs" >"$dir/packages.txt"
echo "gpu-check-deps: $(ls "$dir/debs" | wc -l) packages in $dir: debs $(du -sh "$dir/debs" | cut -f1), unpacked $(du -sh "$dir/root" | cut -f1)"
