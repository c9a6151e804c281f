#!/usr/bin/env bash
# Runs every test executable under a folder (a build tree, or a folder of carried binaries)
# directly — not through CTest, whose files hold the build machine's paths — and writes the
# full output to $OUT/suite.log (or ./gpu-logs/suite.log) and one summary line per executable.
# Usage on the GPU machine: bash scripts/gpu_suite.sh [DIR]   (default: build/tests)
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/gpu_env.sh"
export LD_LIBRARY_PATH=$tg_libs
dir=${1:-build/tests}
out=${OUT:-gpu-logs}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/suite.log"
status=0
for exe in $(find "$dir" -type f -name '*_tests' -perm -u+x | sort); do
  name=$(basename "$exe")
  echo "===== $name" >> "$out/suite.log"
  "$exe" > "$out/$name.tmp" 2>&1
  rc=$?
  cat "$out/$name.tmp" >> "$out/suite.log"
  summary=$(grep -E '^\[doctest\] test cases' "$out/$name.tmp" | tail -1)
  rm -f "$out/$name.tmp"
  printf '%-24s rc=%d  %s\n' "$name" "$rc" "$summary" | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
