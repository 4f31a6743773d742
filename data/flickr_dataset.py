#!/usr/bin/env python3
"""Builds the car/bicycle dataset from Flickr (run through `make -f Makefile.data dataset`).

For each keyword: flickr.photos.search (text and tag = keyword, by relevance, url_c size), download
photos in rank order, skip failed downloads and non-images, drop duplicates by content hash
(across classes too), until TRAIN + TEST unique photos are found. They are then shuffled with a
generator seeded from (SEED, class): the first TRAIN go to OUT/train/<class>/, the next TEST to
OUT/test/<class>/, named <class>_NNNN.jpg. OUT/manifest.csv lists every file with its source URL,
photo id, license and sha256 and is written last (present = complete); OUT/skipped.csv lists what
was skipped and why. Everything fetched is kept in OUT/.state, so an interrupted build resumes.

The API key comes from the environment (FLICKR_API_KEY), never from the command line, so it does
not show in `ps`. Exit status: 0 done, 1 search failed or ran out, 2 bad setup, 130 interrupted.
"""
import argparse
import os
import re
import sys

from flickr.build import SPLITS, Collector, assign, log, write_class, write_csv, write_manifest
from flickr.net import ApiError, Fetcher
from flickr.state import State, StateError


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="dataset directory (created)")
    ap.add_argument("--keywords", nargs="+", required=True, help="one class per keyword")
    ap.add_argument("--train", type=int, required=True, help="training images per class")
    ap.add_argument("--test", type=int, required=True, help="test images per class")
    ap.add_argument("--seed", type=int, default=0, help="seed of the train/test assignment")
    ap.add_argument("--api-base", default="https://api.flickr.com")
    ap.add_argument("--per-page", type=int, default=100, help="search results per page (max 500)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    ap.add_argument("--retries", type=int, default=3, help="extra attempts after a failed request")
    ap.add_argument("--retry-wait", type=float, default=2.0,
                    help="seconds before the first retry, doubled for each next one")
    return ap.parse_args()


def fail(msg, code):
    log(f"dataset: {msg}")
    sys.exit(code)


def check_setup(a):
    if not os.environ.get("FLICKR_API_KEY", "").strip():
        fail("FLICKR_API_KEY is not set: export your Flickr API key "
             "(https://www.flickr.com/services/apps/create/) and run again", 2)
    out = a.out.rstrip("/") or a.out
    if os.path.islink(out):
        # `make -f Makefile.data sample` links the shared carbike64 set here: never write into it.
        fail(f"{out} is a symlink (to {os.readlink(out)}), probably the shared dataset linked by "
             f"`make -f Makefile.data sample`; refusing to write into it. Remove the link or "
             f"choose another DATASET_DIR.", 2)
    for k in a.keywords:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", k):
            fail(f"keyword '{k}' is also a folder and file name: use letters, digits, _ and -", 2)
    if len(set(a.keywords)) != len(a.keywords):
        fail(f"keywords repeat: {' '.join(a.keywords)}", 2)
    if a.train < 0 or a.test < 0 or a.train + a.test == 0:
        fail(f"need a positive number of images per class (train {a.train}, test {a.test})", 2)
    if not 1 <= a.per_page <= 500:
        fail(f"--per-page must be 1..500 (Flickr's limit), not {a.per_page}", 2)
    return out


def build(a, out):
    state = State(os.path.join(out, ".state"))
    collector = Collector(state, Fetcher(a.timeout, a.retries, a.retry_wait), a.api_base,
                          os.environ["FLICKR_API_KEY"].strip(), a.per_page)
    need = a.train + a.test
    kept, short = {}, []
    for cls in a.keywords:
        kept[cls], looked = collector.collect(cls, need)
        if len(kept[cls]) < need:
            short.append(f"{cls}: the search ran out after {looked} results with "
                         f"{len(kept[cls])} usable unique images; {need} needed "
                         f"(train {a.train} + test {a.test})")
    if short:
        for s in short:
            log(f"dataset: {s}")
        fail("not enough images: lower TRAIN_PER_CLASS/TEST_PER_CLASS or change KEYWORDS "
             f"(what was downloaded is kept in {out}/.state for the next run)", 1)

    # The manifest marks a complete dataset: drop it while the files change under it.
    manifest = os.path.join(out, "manifest.csv")
    if os.path.exists(manifest):
        os.remove(manifest)
    rows = []
    for cls in a.keywords:
        rows += write_class(out, cls, assign(kept[cls], a.train, a.test, a.seed, cls), state)
    write_csv(os.path.join(out, "skipped.csv"), ["class", "photo_id", "url", "reason"],
              collector.skipped)
    write_manifest(out, rows)
    for split in SPLITS:
        for name in sorted(os.listdir(os.path.join(out, split))):
            if name not in a.keywords and os.path.isdir(os.path.join(out, split, name)):
                log(f"dataset: note: {out}/{split}/{name} is not one of the keywords; left as is, "
                    f"but it is an extra class for extract")
    log(f"dataset: {out}: {len(a.keywords)} classes x ({a.train} train + {a.test} test) images, "
        f"seed {a.seed}; manifest.csv lists them, skipped.csv lists {len(collector.skipped)} "
        f"skipped photos")


def main():
    a = parse_args()
    out = check_setup(a)
    try:
        build(a, out)
    except (ApiError, StateError) as e:
        fail(str(e), 1)
    except KeyboardInterrupt:
        fail(f"interrupted; run the same command again to resume ({out}/.state keeps what was "
             f"fetched)", 130)


if __name__ == "__main__":
    main()
