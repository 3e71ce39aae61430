#!/usr/bin/env bash
# Build the fuzz crate (fuzz/, cargo-fuzz + libFuzzer) and run every target
# for FUZZ_SECONDS (default 15) each, seeded from testdata/ (scripts/
# fuzz-seed.py). Fails on the first target that finds a crash; the input is
# left in fuzz/artifacts/<target>/ — copy it to testdata/fuzz-regressions/
# <target>/ and fix the bug (see docs/reliability.md).
#
# No nightly toolchain here: RUSTC_BOOTSTRAP=1 lets the stable compiler take
# cargo-fuzz's -Z flags. ASan (the default) is used when it links; set
# FUZZ_SANITIZER=none to run without it. Usage:
#   scripts/fuzz-smoke.sh [target ...]        FUZZ_SECONDS=600 for a long run
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-15}
san=${FUZZ_SANITIZER:-address}
export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null; then
  cargo install --locked cargo-fuzz
fi
python3 scripts/fuzz-seed.py
cd fuzz
cargo fuzz build -O -s "$san"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
mkdir -p logs
for t in "${targets[@]}"; do
  # Regression inputs go first, so a fixed crash that returns fails here too.
  extra=()
  [ -d "../testdata/fuzz-regressions/$t" ] && extra=("../testdata/fuzz-regressions/$t")
  echo "== $t (${secs}s)"
  if ! cargo fuzz run -O -s "$san" "$t" "corpus/$t" "${extra[@]}" -- \
      -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 >"logs/$t.log" 2>&1; then
    tail -40 "logs/$t.log"
    echo "fuzz target $t FAILED: see fuzz/artifacts/$t/ and fuzz/logs/$t.log" >&2
    exit 1
  fi
  grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb' "logs/$t.log" | tr '\n' ' '
  echo
done
echo "fuzz smoke: ${#targets[@]} targets, ${secs}s each, no crash"
