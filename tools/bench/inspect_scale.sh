#!/usr/bin/env bash
# The `inspect` timings of BENCHMARKS.md, "Metadata at scale": builds the
# synthetic log of 1,004 commits naming 100,000 data files (the scale test,
# kept in DIR), then times `must-ds inspect DIR` three times from the
# checkpoint and three times from a copy without it (all 1,004 log files
# replayed): wall time and max RSS from GNU time.
#   tools/bench/inspect_scale.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR="${1:-/tmp/scale}"
MUST_SCALE_DIR="$DIR" cargo test --release --quiet --test it scale > /dev/null
cargo build --release --quiet
BIN=target/release/must-ds
NOCK="$DIR-no-checkpoint"
rm -rf "$NOCK"
cp -r "$DIR" "$NOCK"
rm -rf "$NOCK/_must/checkpoint" "$NOCK/_must/last_checkpoint.json"
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "GNU time (/usr/bin/time) is needed for max RSS" >&2; exit 1; }
for what in "from the checkpoint:$DIR" "checkpoint removed, log replayed:$NOCK"; do
    echo "${what%%:*}"
    for run in 1 2 3; do
        "$TIME" -f "  run $run: %e s, max RSS %M KB" "$BIN" inspect "${what#*:}" > /dev/null
    done
done
