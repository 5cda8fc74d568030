#!/usr/bin/env bash
# sigil's whole check, the same on a laptop and in CI (`.ci/run` calls it):
# installs the test tools, then cargo fmt --check, the module-cycle check, clippy -D warnings, and every test.
#
# Environment:
#   SIGIL_TEST_CACHE   tool cache (default ~/.cache/sigil-test); the tests find programs in $SIGIL_TEST_CACHE/bin
#   CARGO_TARGET_DIR   build dir; under CI=true it defaults to $SIGIL_TEST_CACHE/target so fresh clones reuse it
#   SIGIL_TEST_RUNNER  nextest | cargo  (default: nextest when installed)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${SIGIL_TEST_CACHE:-$HOME/.cache/sigil-test}

# Runs one step; on failure names it and stops at once.
step() {
    local name=$1 start=$SECONDS
    shift
    echo "==> $name: $*"
    if ! "$@"; then
        echo >&2
        echo "scripts/test.sh: FAILED at step '$name' after $((SECONDS - start))s: $*" >&2
        exit 1
    fi
    echo "==> $name ok ($((SECONDS - start))s)"
}

step tools scripts/install-tools.sh
export SIGIL_TEST_BIN="$CACHE/bin"
export PATH="$SIGIL_TEST_BIN:$PATH"

# CI runs in a fresh clone each time: keep the build outside it so the next run on the machine is warm.
if [[ -z ${CARGO_TARGET_DIR:-} && ${CI:-} == true ]]; then
    export CARGO_TARGET_DIR="$CACHE/target"
    # Incremental state cannot be reused from one fresh clone to the next; it only fills the disk.
    export CARGO_INCREMENTAL=0
fi

runner=${SIGIL_TEST_RUNNER:-}
if [[ -z $runner ]]; then
    if cargo nextest --version >/dev/null 2>&1; then runner=nextest; else runner=cargo; fi
fi

step fmt cargo fmt --all -- --check
step module-cycles python3 scripts/check-module-cycles.py
step clippy cargo clippy --workspace --all-targets -- -D warnings
step clippy-no-dev cargo clippy -p sigil --no-default-features --lib --bins -- -D warnings
# What the container image ships (no `sigil dev`), for the e2e test that checks its commands. Its own
# target dir under the cache, so it stays warm between runs and never replaces the tests' binary.
NO_DEV_TARGET="$CACHE/target-no-dev"
step build-no-dev cargo build -p sigil --no-default-features --bin sigil --target-dir "$NO_DEV_TARGET"
export SIGIL_NO_DEV_BIN="$NO_DEV_TARGET/debug/sigil"
# The benchmark script still runs end to end (tiny sizes, debug build, no figure asserted).
step bench-smoke scripts/bench.sh --smoke
case $runner in
    nextest)
        # One process per test (servers, env and globals stay apart), test binaries run side by side,
        # and a hard per-test timeout (.config/nextest.toml). nextest does not run doctests: cargo test
        # --doc does, first, so that nextest's summary is the run's closing line.
        step doctests cargo test --workspace --doc
        step tests cargo nextest run --workspace --lib --bins --tests --profile "$([[ ${CI:-} == true ]] && echo ci || echo default)"
        ;;
    cargo) step tests cargo test --workspace --lib --bins --tests ;;
    *)
        echo "scripts/test.sh: SIGIL_TEST_RUNNER must be nextest or cargo, not '$runner'" >&2
        exit 2
        ;;
esac
# A one-minute fuzz smoke run over every target of fuzz/ (its own workspace, built on demand).
if [[ ${CI:-} == true ]]; then
    step fuzz-smoke scripts/fuzz.sh
fi
echo "scripts/test.sh: all checks passed"
