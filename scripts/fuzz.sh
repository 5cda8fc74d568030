#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for SIGIL_FUZZ_SECONDS in total (default 60, split evenly),
# and prints executions and crashes per target. scripts/test.sh runs it under CI=true as a smoke run;
# SECURITY.md ("How sigil is tested") has the long-run figures and commands.
#
# libFuzzer needs nightly compiler flags; on a stable toolchain RUSTC_BOOTSTRAP=1 allows them.
# Sanitizer off (-s none): the code under test is safe Rust, and it doubles the executions per core.
#   SIGIL_FUZZ_SECONDS  total seconds over all targets (default 60)
#   SIGIL_FUZZ_TARGETS  space-separated subset (default: all)
#   SIGIL_FUZZ_TARGET_DIR  build dir (default $SIGIL_TEST_CACHE/target-fuzz)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT/fuzz"
export RUSTC_BOOTSTRAP=1
CACHE=${SIGIL_TEST_CACHE:-$HOME/.cache/sigil-test}
# Its own build dir (sanitizer-coverage flags rebuild every crate), kept in the cache like the tests'.
export CARGO_TARGET_DIR=${SIGIL_FUZZ_TARGET_DIR:-$CACHE/target-fuzz}
# One Cargo.lock in the repository: the fuzz workspace resolves from the root's versions.
[[ -f Cargo.lock ]] || cp ../Cargo.lock Cargo.lock
total=${SIGIL_FUZZ_SECONDS:-60}
read -r -a targets <<<"${SIGIL_FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
cargo fuzz build -s none -O
per=$((total / ${#targets[@]}))
((per > 0)) || per=1
failed=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "seeds/$target"
    log=$(mktemp)
    # The seeds are committed; the corpus grows locally (and in CI's cache) and is not.
    if cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$per" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz $target: ${runs:-?} executions in ${per}s, 0 crashes"
    else
        echo "fuzz $target: CRASH (artifacts in fuzz/artifacts/$target)" >&2
        tail -n 40 "$log" >&2
        failed=1
    fi
    rm -f "$log"
done
exit $failed
