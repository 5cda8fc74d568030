#!/usr/bin/env bash
# sigil's benchmarks, side by side with the tools its users would pick (issue 14): installs the tools
# (scripts/install-tools.sh), builds an optimized sigil, runs every scenario against a fresh `sigil dev`
# (or the cluster of --kubeconfig), prints the table and writes BENCHMARKS.md.
#
#   scripts/bench.sh                      # the full benchmark (about 20 minutes on 2 cores), writes BENCHMARKS.md
#   scripts/bench.sh --smoke              # tiny sizes, one run, the debug build, nothing written or asserted (CI)
#   scripts/bench.sh --kubeconfig FILE    # against another cluster (one without a sigil controller of its own)
#   scripts/bench.sh --only sync,cli      # some scenarios (cold, external, sync, render, cli, sops)
#   scripts/bench.sh --runs 5 --out /tmp/b.md
#
# Environment: SIGIL_TEST_CACHE (tool cache, as for scripts/test.sh), CARGO_TARGET_DIR,
# SIGIL_BENCH_PROFILE (cargo profile; default bench-release, dev with --smoke), SIGIL_BENCH_PROFILER
# (a command prefix for every sigil process, `{out}` naming its output in the log folder), e.g.
#   SIGIL_BENCH_PROFILER='perf record -F 300 --call-graph dwarf -o {out} --' scripts/bench.sh --only cold --runs 1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${SIGIL_TEST_CACHE:-$HOME/.cache/sigil-test}

smoke=false
args=()
for arg in "$@"; do
    [[ $arg == --smoke ]] && smoke=true
    args+=("$arg")
done

scripts/install-tools.sh age git kube moto sops >&2
# The controller finds kubectl (kustomize) and helm on the PATH, as in a container image.
export PATH="$CACHE/bin:$PATH"

if [[ -z ${CARGO_TARGET_DIR:-} && ${CI:-} == true ]]; then
    export CARGO_TARGET_DIR="$CACHE/target"
fi
profile=${SIGIL_BENCH_PROFILE:-$([[ $smoke == true ]] && echo dev || echo bench-release)}
echo "bench: building sigil (cargo profile $profile)" >&2
cargo build --profile "$profile" --bin sigil >&2
dir=$([[ $profile == dev ]] && echo debug || echo "$profile")
sigil="${CARGO_TARGET_DIR:-$ROOT/target}/$dir/sigil"

exec python3 scripts/bench/bench.py --sigil "$sigil" --bin "$CACHE/bin" \
    --build "cargo build --profile $profile ($(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ', uncommitted changes'))" \
    --command "scripts/bench.sh${*:+ $*}" "${args[@]}"
