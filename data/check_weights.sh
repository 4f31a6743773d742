#!/bin/sh
# check_weights.sh FILE PREFIX: keeps FILE only if its SHA-256 starts with PREFIX, the check
# torchvision's load_state_dict_from_url(check_hash=True) makes with the hex digits in the file
# name (vgg16-397923af.pth → 397923af).
#   exit 0  FILE matches (kept)
#   exit 1  FILE is missing, or does not match: then it is DELETED (a truncated or wrong download
#           must not be mistaken for the weights later) and the message says so, on stderr
#   exit 2  usage error (PREFIX must be 1–64 hex digits)
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 FILE PREFIX" >&2
  exit 2
fi
file=$1
prefix=$(printf '%s' "$2" | tr 'A-F' 'a-f')
case $prefix in
  "" | *[!0-9a-f]*)
    echo "check_weights: PREFIX must be hex digits (got '$2')" >&2
    exit 2
    ;;
esac
if [ ${#prefix} -gt 64 ]; then
  echo "check_weights: PREFIX is longer than a SHA-256 (64 hex digits)" >&2
  exit 2
fi
if [ ! -f "$file" ]; then
  echo "check_weights: $file: no such file" >&2
  exit 1
fi
if ! sum=$(sha256sum "$file" | cut -c1-64) || [ ${#sum} -ne 64 ]; then
  echo "check_weights: $file: cannot compute its SHA-256" >&2
  exit 1
fi
got=$(printf '%s' "$sum" | cut -c1-${#prefix})
if [ "$got" != "$prefix" ]; then
  echo "check_weights: $file has SHA-256 $got..., expected $prefix...: wrong or damaged file," \
    "deleting it" >&2
  rm -f "$file"
  exit 1
fi
echo "check_weights: $file OK (SHA-256 $prefix...)"
