#!/usr/bin/env bash
# Regenerates every copy of sigil's CRDs from `sigil crds`: crds/ and the Helm chart's files/crds/.
# Tests fail (tests/e2e/crds.rs, tests/e2e/chart.rs) until this has been run after a CRD type changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build -q --bin sigil
sigil=${CARGO_TARGET_DIR:-target}/debug/sigil
for dir in crds deploy/charts/sigil/files/crds; do
    rm -f "$dir"/*.yaml
    "$sigil" crds --output-dir "$dir"
    echo "wrote $dir/"
done
