#!/usr/bin/env bash
# Installs tapegrad's build and test dependencies from Debian packages (DESIGN.md §2).
# Idempotent: when every package is already installed it changes nothing. Run as root.
set -euo pipefail

packages=(cmake make g++ libeigen3-dev doctest-dev libcli11-dev nlohmann-json3-dev zlib1g-dev
          dataset-fashion-mnist gnuplot-nox)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
