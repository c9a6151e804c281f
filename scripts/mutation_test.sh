#!/usr/bin/env bash
# Mutation testing of the sampled backward strategies (issue 12): each mutation below is a small,
# plausible bug in the sampler or the strategies (ops/matmul/sampling_kernels.h,
# ops/matmul/cpu/sampling.cpp, ops/matmul/sampled.cpp), applied as a perl substitution to the
# source, after which the CPU test executables are rebuilt and run. A mutation is CAUGHT when a
# test fails, MISSED when every test passes, and BUILD-FAILED when it does not compile (a broken
# mutation, not a catch). Every edit must match exactly as often as stated, or the script stops:
# a pattern that drifted away from the source cannot pass silently. The source is restored
# after each mutation and on any exit (trap); a run killed without its trap is restored by the
# next run from the backup it left in the build folder.
#
# Usage: scripts/mutation_test.sh [--build DIR] [--list] [--check] [NAME...]
#   --build DIR  CPU build folder (default build-cpu; configured with TAPEGRAD_CUDA=OFF if new)
#   --list       print the mutations and exit
#   --check      only check that every edit still matches the source (on copies; no build)
#   NAME...      run only these mutations (default: all)
# Output: one line per mutation, "CAUGHT|MISSED|BUILD-FAILED  name  (failing test cases)", and
# a final count; exit status 0 only when every mutation that ran was caught. docs/mutation-testing.md
# records a run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/build-cpu"
LIST=0
CHECK=0
ONLY=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build) BUILD="$(realpath -m "$2")"; shift 2 ;;
    --list) LIST=1; shift ;;
    --check) CHECK=1; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) ONLY+=("$1"); shift ;;
  esac
done

KERNELS=ops/matmul/sampling_kernels.h
CPU=ops/matmul/cpu/sampling.cpp
SAMPLED=ops/matmul/sampled.cpp
TARGETS=(ops_tests apps_tests)
TESTS=(tests/ops/ops_tests tests/apps/apps_tests)

# name ~~ file ~~ number of matches the edit must make ~~ perl substitution(s) (on the whole
# file; the sum of their counts must equal the number) ~~ what the bug is
MUTATIONS=(
  "no-rest-factor ~~ $KERNELS ~~ 1 ~~ s/static_cast<double>\(m\) \* rest \/ /static_cast<double>(m) \/ /g ~~ draw weights m/(s p): the (1 - P_C) factor dropped"
  "draws-include-winners ~~ $CPU ~~ 3 ~~ s/draw_uniform\(seed, subsequence, b, k, j\) \* rest;/draw_uniform(seed, subsequence, b, k, j) * plan.tail[0];/g + s/find_draw\(plan.tail.data\(\), plan.winners, K, target\)/find_draw(plan.tail.data(), 0, K, target)/g + s/for \(int64_t r = plan.winners; r < K; \+\+r\)/for (int64_t r = 0; r < K; ++r)/g ~~ draws over all rows (winners too, kept twice), weights still m (1 - P_C) / (s p)"
  "alpha-free-p ~~ $CPU ~~ 1 ~~ s/draw_weight\(m, rest, draws, plan.p\[static_cast<size_t>\(r\)\]\)/draw_weight(m, rest, draws, (plan.p[static_cast<size_t>(r)] - config.alpha \/ static_cast<double>(K)) \/ (1.0 - config.alpha))/g ~~ draw weights from the alpha-free p = s_i / sum s instead of the p the rows were drawn with"
  "no-multiplicity ~~ $CPU ~~ 1 ~~ s/draw_weight\(m, rest,/draw_weight(1, rest,/g ~~ a row drawn m times gets the weight of one draw (m_j ignored)"
  "winner-weight-1.02 ~~ $CPU ~~ 1 ~~ s/slot_weight\[slot\] = 1\.0f;/slot_weight[slot] = 1.02f;/g ~~ winners weighted 1.02 instead of 1"
  "rng-ignores-step ~~ $SAMPLED ~~ 1 ~~ s/\(node_id_ << 32\) \| step\)/(node_id_ << 32) | (step & 0))/g ~~ the random stream ignores the step: every forward of a node draws the same rows"
  "rng-ignores-node ~~ $SAMPLED ~~ 1 ~~ s/\(node_id_ << 32\) \| step\)/((node_id_ & 0) << 32) | step)/g ~~ the random stream ignores the node id: all nodes draw alike"
  "rng-ignores-item ~~ $KERNELS ~~ 1 ~~ s/static_cast<uint64_t>\(b\) \* static_cast<uint64_t>\(k\)/static_cast<uint64_t>(b & 0) * static_cast<uint64_t>(k)/g ~~ the random stream ignores the item: identical items of a batch draw the same rows"
  "rng-node-step-collide ~~ $SAMPLED ~~ 1 ~~ s/\(node_id_ << 32\) \| step\)/node_id_ + step)/g ~~ node and step added into one key: (node 1, step 0) draws what (node 0, step 1) draws"
  "draw-target-unscaled ~~ $CPU ~~ 1 ~~ s/draw_uniform\(seed, subsequence, b, k, j\) \* rest;/draw_uniform(seed, subsequence, b, k, j);/g ~~ inverse CDF target u instead of u (1 - P_C): draws pile onto the first non-winner"
  "winner-threshold-ignored ~~ $KERNELS ~~ 1 ~~ s/return best_ratio < 1\.0 \/ static_cast<double>\(k\) \? best_c : 0;/return best_ratio == best_ratio ? best_c : 0;/g ~~ the rule's minimiser always becomes the winner set, even when (1 - Q_c)/(k - c) >= 1/k"
  "padding-weight-nonzero ~~ $CPU ~~ 1 ~~ s/slot_weight\[slot\] = 0\.0f;/slot_weight[slot] = 1.0f;/g ~~ padding slots (copies of slot 0) weighted 1 instead of 0"
  "proxy-not-used ~~ $SAMPLED ~~ 1 ~~ s/row_norms\(operand, use_proxy \? proxy_ : Tensor\(\)\)/row_norms(operand, Tensor())/g ~~ scores ||x|| alone: the learned gradient-norm proxy is ignored"
  "proxy-not-updated ~~ $SAMPLED ~~ 1 ~~ s/if \(proxy_.defined\(\)\) update_row_norm_ema/if (proxy_.defined() && beta_ > 2) update_row_norm_ema/g ~~ backward never updates the proxy (it stays 1)"
  "k-min-ignored ~~ $SAMPLED ~~ 1 ~~ s/std::max\(k, k_min\)/std::max(k, k_min & 0)/g ~~ budget floor(rho K) without k_min: small items are sampled instead of exact"
)

# Field $2 (1-based) of mutation $1.
field() { awk -F ' ~~ ' -v i="$2" '{ print $i }' <<<"$1"; }
name_of() { field "$1" 1; }

if [[ $LIST == 1 ]]; then
  for m in "${MUTATIONS[@]}"; do printf '%-26s %-38s %s\n' "$(name_of "$m")" "$(field "$m" 2)" "$(field "$m" 5)"; done
  exit 0
fi
for want in "${ONLY[@]+"${ONLY[@]}"}"; do
  found=0
  for m in "${MUTATIONS[@]}"; do [[ "$(name_of "$m")" == "$want" ]] && found=1; done
  [[ $found == 1 ]] || { echo "mutation_test: unknown mutation '$want' (--list shows them)" >&2; exit 2; }
done

# Applies the edit of mutation field list ($count, $edit) to file $1 in place; exits 2 when the
# edit does not match exactly $count times or leaves the file unchanged.
apply_edit() {
  local path="$1" before
  before="$(mktemp)"
  cp "$path" "$before"
  MUT_EDIT="$edit" MUT_COUNT="$count" perl -0777 -i -pe '
    my $n = eval "$ENV{MUT_EDIT}"; die "bad edit: $@" if $@; $total += $n;
    END { if ($total != $ENV{MUT_COUNT}) { print STDERR "matched $total times, expected $ENV{MUT_COUNT}\n"; exit 3 } }' \
    "$path" || { rm -f "$before"; echo "mutation_test: mutation $name no longer matches $file: update its pattern" >&2; exit 2; }
  if cmp -s "$before" "$path"; then rm -f "$before"; echo "mutation_test: mutation $name left $file unchanged" >&2; exit 2; fi
  rm -f "$before"
}

selected() { [[ ${#ONLY[@]} -eq 0 ]] || printf '%s\n' "${ONLY[@]}" | grep -qxF "$1"; }

if [[ $CHECK == 1 ]]; then
  scratch="$(mktemp -d)"
  for m in "${MUTATIONS[@]}"; do
    name="$(field "$m" 1)" file="$(field "$m" 2)" count="$(field "$m" 3)" edit="$(field "$m" 4)"
    selected "$name" || continue
    cp "$ROOT/$file" "$scratch/copy"
    apply_edit "$scratch/copy"
    echo "ok  $name"
  done
  rm -rf "$scratch"
  exit 0
fi

# Backups of the mutated file live in the build folder; restore() puts back whatever is there.
STATE="$BUILD/mutation-backup"
mkdir -p "$STATE"
restore() {
  local backup
  for backup in "$STATE"/*.orig; do
    [[ -e "$backup" ]] || continue
    local rel
    rel="$(cat "${backup%.orig}.path")"
    # cat, not cp -p: the restored file gets a new mtime, so the build recompiles the original.
    cat "$backup" >"$ROOT/$rel"
    cmp -s "$backup" "$ROOT/$rel" || { echo "mutation_test: could not restore $rel (backup: $backup)" >&2; return 1; }
    rm -f "$backup" "${backup%.orig}.path"
  done
}
restore  # left over from a killed run
trap 'restore' EXIT
trap 'exit 130' INT TERM

if [[ ! -f "$BUILD/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD" -DTAPEGRAD_CUDA=OFF >/dev/null
fi
LOG="$BUILD/mutation-logs"
mkdir -p "$LOG"

build() { cmake --build "$BUILD" -j"${JOBS:-2}" --target "${TARGETS[@]}" >"$1" 2>&1; }

# Runs the test executables; prints the failing test cases as "exe: case; ..." (empty: all passed).
run_tests() {
  local exe failures=""
  for exe in "${TESTS[@]}"; do
    local xml="$LOG/$(basename "$exe").xml"
    (cd "$BUILD" && "./$exe" --reporters=junit --out="$xml" >/dev/null 2>&1) || true
    failures+="$(python3 - "$xml" "$(basename "$exe")" <<'EOF'
import sys, xml.etree.ElementTree as ET
path, exe = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except Exception as e:  # a crash before the report is a failure too
    print(f"{exe}: crashed or no report ({e}); ", end="")
    sys.exit()
for case in root.iter("testcase"):
    if case.find("failure") is not None or case.find("error") is not None:
        print(f"{exe}: {case.get('name')}; ", end="")
EOF
)"
  done
  printf '%s' "$failures"
}

echo "== baseline: unmutated build"
build "$LOG/baseline.build.log" || { echo "mutation_test: the unmutated tree does not build (see $LOG/baseline.build.log)" >&2; exit 1; }
baseline="$(run_tests)"
if [[ -n "$baseline" ]]; then
  echo "mutation_test: tests fail without any mutation: $baseline" >&2
  exit 1
fi

caught=0 missed=0 broken=0 total=0
for m in "${MUTATIONS[@]}"; do
  name="$(field "$m" 1)" file="$(field "$m" 2)" count="$(field "$m" 3)" edit="$(field "$m" 4)" what="$(field "$m" 5)"
  selected "$name" || continue
  total=$((total + 1))
  key="$(tr '/' '_' <<<"$file")"
  cp "$ROOT/$file" "$STATE/$key.orig"
  echo "$file" >"$STATE/$key.path"
  apply_edit "$ROOT/$file"
  if ! build "$LOG/$name.build.log"; then
    result="BUILD-FAILED"; detail="(see $LOG/$name.build.log)"; broken=$((broken + 1))
  else
    failures="$(run_tests)"
    if [[ -n "$failures" ]]; then result="CAUGHT"; detail="${failures%; }"; caught=$((caught + 1))
    else result="MISSED"; detail="every test passed"; missed=$((missed + 1)); fi
  fi
  restore
  printf '%-12s %-26s %s\n' "$result" "$name" "$detail"
  printf '%-12s   %s\n' "" "$what"
done

echo "== restoring the unmutated build"
build "$LOG/restored.build.log" || { echo "mutation_test: the restored tree does not build" >&2; exit 1; }
echo "== $caught of $total mutations caught, $missed missed, $broken did not build"
[[ $caught == "$total" ]]
