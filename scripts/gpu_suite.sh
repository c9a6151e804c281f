#!/usr/bin/env bash
# Runs every test executable of a build directly (no CTest: its files hold this machine's
# paths), CUDA suites included, and writes one log per executable to $OUT (or ./gpu-logs).
# Usage on the GPU machine: bash scripts/gpu_suite.sh [BUILD_DIR]
set -uo pipefail
build=${1:-build}
out=${OUT:-gpu-logs}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
status=0
for exe in $(find "$build/tests" -type f -name '*_tests' -perm -u+x | sort); do
  name=$(basename "$exe")
  "$exe" > "$out/$name.log" 2>&1
  rc=$?
  summary=$(grep -E '^\[doctest\] test cases' "$out/$name.log" | tail -1)
  printf '%-24s rc=%d  %s\n' "$name" "$rc" "$summary" | tee -a "$out/summary.txt"
  [ "$rc" -eq 0 ] || status=1
done
exit $status
