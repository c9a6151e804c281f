#!/usr/bin/env bash
# Unpacks the header-only Debian packages tapegrad builds against into a local prefix, for a
# machine that cannot install packages (e.g. the GPU machine, which reaches no registry):
#   third_party/unpack_debs.sh PREFIX        (on a machine with apt; downloads, then unpacks)
#   cmake -S . -B build -DTAPEGRAD_DEPS_PREFIX=PREFIX   (wherever PREFIX was copied)
# zlib's runtime is on every system; its headers come along too.
set -euo pipefail
prefix=${1:?usage: third_party/unpack_debs.sh PREFIX}
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

packages=(libeigen3-dev doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev)
(cd "$work" && apt-get download "${packages[@]}")
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$prefix"
  echo "unpacked $(basename "$deb")"
done
echo "configure with: cmake -S . -B build -DTAPEGRAD_DEPS_PREFIX=$prefix"
