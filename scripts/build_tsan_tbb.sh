#!/usr/bin/env bash
# Builds oneTBB with ThreadSanitizer from Debian 12's own source package (the version of the
# installed libtbb-dev) and installs it into PREFIX, for check-hard's TSan build (build-tsan).
#
# Why: Debian's libtbb.so is not instrumented, so TSan cannot see the happens-before edges TBB's
# scheduler makes inside the library (task spawn/steal, wait_context) and reports false races on
# data a parallel_for's workers hand to its caller. Linked against this build, TSan sees them.
#
# Source: onetbb_2021.8.0.orig.tar.xz plus Debian's patches (debian/patches/series of
# onetbb_2021.8.0-2+deb12u1.debian.tar.xz), fetched from the Debian archive apt is configured with
# (through apt's own downloader, so apt's proxies and mirrors apply), else deb.debian.org, else
# snapshot.debian.org by content hash, and checked against the SHA-256 sums below (the same as in
# the .dsc listed by bookworm's signed Release -> main/source/Sources).
# Idempotent: does nothing when PREFIX holds a stamp for the same recipe.
# Usage: scripts/build_tsan_tbb.sh [PREFIX]   (default build-tsan-deps/onetbb; env JOBS)
# Needs: apt (apt-helper) or curl, xz-utils, patch, cmake, ninja-build, g++ (scripts/install-deps.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${1:-$ROOT/build-tsan-deps/onetbb}
mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
OWNED=$PREFIX/.vggcache-tsan-owned  # this script may empty PREFIX only when it made it
if [ ! -f "$OWNED" ]; then
  [ -z "$(ls -A "$PREFIX")" ] || { echo "build_tsan_tbb: $PREFIX is not empty and not ours" >&2; exit 1; }
  touch "$OWNED"
fi
JOBS=${JOBS:-$(nproc)}

VERSION=2021.8.0
DEBREV=2+deb12u1
ORIG=onetbb_${VERSION}.orig.tar.xz
ORIG_SHA256=7e9111b8bb59c8800bf6d0b06afe7b0891937443d2dae1ee1101c8e2ede6a7ef
ORIG_SHA1=9154974d2ef8dd341e9b39b05519e95a6de16f5a # snapshot.debian.org/file/<sha1>
DEB=onetbb_${VERSION}-${DEBREV}.debian.tar.xz
DEB_SHA256=b83a270205b38cdf66972fa1467c3e29493b88b92ecacf4f3672e87d67199df5
DEB_SHA1=48ecb05e7430d911b8a1bcd4f05844b40a449a0f
POOL=pool/main/o/onetbb
CXX_BIN=${CXX:-c++}
# TBB_SANITIZE=thread adds -fsanitize=thread to compile and link and turns off what TSan cannot
# take (IPO, ITT notifications in tbbmalloc). No hwloc: tbbbind (NUMA/core-type constraints) is
# not used by vggcache, and leaving it out makes the build the same with or without libhwloc-dev.
CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
  -DTBB_SANITIZE=thread
  -DTBB_TEST=OFF -DTBB_EXAMPLES=OFF -DTBB_STRICT=OFF -DTBB4PY_BUILD=OFF
  -DTBB_DISABLE_HWLOC_AUTOMATIC_SEARCH=ON
  -DCMAKE_INSTALL_LIBDIR=lib
)
CXXFLAGS_TBB=-fno-omit-frame-pointer  # plus a -ffile-prefix-map for the build directory, below
RECIPE="onetbb ${VERSION}-${DEBREV} $ORIG_SHA256 $DEB_SHA256 $($CXX_BIN --version | head -1) ${CMAKE_ARGS[*]} $CXXFLAGS_TBB"
STAMP=$PREFIX/.vggcache-tsan-stamp

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$RECIPE" ] && [ -f "$PREFIX/lib/cmake/TBB/TBBConfig.cmake" ]; then
  echo "build_tsan_tbb: $PREFIX is up to date (onetbb ${VERSION}-${DEBREV}, TSan)"
  exit 0
fi

WORK=$(mktemp -d "${PREFIX%/*}/onetbb-work.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# Archive roots apt is configured with (both deb822 and one-line sources), then the defaults.
mirrors() {
  if command -v apt-get >/dev/null; then
    # shellcheck disable=SC2016  # apt's own $(FIELD) placeholders, not shell
    apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 2>/dev/null |
      awk '$2 == "bookworm" || $2 == "bookworm-updates" {print $1}' | sed 's:/*$::'
  fi
  echo http://deb.debian.org/debian
}

fetch() {  # file, sha256, sha1: into $WORK, verified
  local file=$1 sha256=$2 sha1=$3 url got urls=()
  while read -r m; do urls+=("$m/$POOL/${file//+/%2B}"); done < <(mirrors | awk '!seen[$0]++')
  urls+=("http://snapshot.debian.org/file/$sha1")
  for url in "${urls[@]}"; do
    rm -f "$WORK/$file"
    if [ -x /usr/lib/apt/apt-helper ]; then
      /usr/lib/apt/apt-helper -o APT::Sandbox::User="$(id -un)" download-file "$url" "$WORK/$file" \
        "SHA256:$sha256" >"$WORK/fetch.log" 2>&1 || true
    fi
    if [ ! -s "$WORK/$file" ] && command -v curl >/dev/null; then
      curl -fsSL --retry 3 --connect-timeout 20 -o "$WORK/$file" "$url" >"$WORK/fetch.log" 2>&1 || true
    fi
    if [ -s "$WORK/$file" ]; then
      got=$(sha256sum "$WORK/$file" | cut -d' ' -f1)
      if [ "$got" = "$sha256" ]; then
        echo "build_tsan_tbb: $file from $url (sha256 ok)"
        return 0
      fi
      echo "build_tsan_tbb: $url: wrong sha256 $got" >&2
    else
      echo "build_tsan_tbb: $url: not fetched" >&2
      sed 's/^/    /' "$WORK/fetch.log" >&2 || true
    fi
  done
  echo "build_tsan_tbb: could not fetch $file with sha256 $sha256" >&2
  return 1
}

fetch "$ORIG" "$ORIG_SHA256" "$ORIG_SHA1"
fetch "$DEB" "$DEB_SHA256" "$DEB_SHA1"

SRC=$WORK/src
mkdir -p "$SRC"
tar -xJf "$WORK/$ORIG" -C "$SRC" --strip-components=1
tar -xJf "$WORK/$DEB" -C "$SRC"  # debian/
# Debian's patches in series order, as dpkg-source applies a 3.0 (quilt) package (no fuzz).
while read -r p opts; do
  p=${p%%#*}
  [ -n "$p" ] || continue
  case "$opts" in -p*) level=${opts%% *} ;; *) level=-p1 ;; esac
  patch -d "$SRC" "$level" --fuzz=0 --batch --quiet <"$SRC/debian/patches/$p" ||
    { echo "build_tsan_tbb: Debian patch $p does not apply" >&2; exit 1; }
done <"$SRC/debian/patches/series"

echo "build_tsan_tbb: building oneTBB ${VERSION}-${DEBREV} with -fsanitize=thread into $PREFIX"
# Debug info names the sources onetbb-VERSION/..., not the temporary directory they were built in.
cmake -S "$SRC" -B "$WORK/build" -G Ninja -DCMAKE_INSTALL_PREFIX="$PREFIX" "${CMAKE_ARGS[@]}" \
  -DCMAKE_CXX_FLAGS="$CXXFLAGS_TBB -ffile-prefix-map=$SRC=onetbb-$VERSION" \
  >"$WORK/configure.log" 2>&1 || { tail -40 "$WORK/configure.log" >&2; exit 1; }
cmake --build "$WORK/build" -j "$JOBS" >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log" >&2; exit 1; }
# Replace, not merge: a half-installed or older prefix must not leave stale files behind.
find "$PREFIX" -mindepth 1 ! -path "$OWNED" -delete
cmake --install "$WORK/build" >"$WORK/install.log" 2>&1 || { tail -40 "$WORK/install.log" >&2; exit 1; }
# The library must really be instrumented (not, say, a cached uninstrumented build).
nm -D "$PREFIX/lib/libtbb.so.12" | grep -q " U __tsan_func_entry" ||
  { echo "build_tsan_tbb: $PREFIX/lib/libtbb.so.12 is not TSan-instrumented" >&2; exit 1; }
echo "$RECIPE" >"$STAMP"
echo "build_tsan_tbb: installed $PREFIX"
