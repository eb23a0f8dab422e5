#!/usr/bin/env bash
# The choice of JPEG decoder (BENCHMARKS.md, "The loader against PyTorch
# DataLoader baselines"): zune-jpeg, as the loader decodes
# (`must-ds bench --decode-only --workers 1`), against libjpeg-turbo
# (tools/bench/decoders.py: PyTurboJPEG, or simplejpeg), on the same
# embedded JPEGs of a demo corpus, one thread pinned to one core
# (taskset -c 0), alternating, two rounds. Prints images/s.
#   pip install -r tools/bench/requirements.txt   # [PyTurboJPEG optional]
#   tools/bench/decoders.sh [ROOT] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="${1:-/tmp/must-bench-2k}"
IMAGES="${2:-2000}"
cargo build --release --quiet
BIN=target/release/must-ds
[ -d "$ROOT/_must" ] || "$BIN" demo "$ROOT" --images "$IMAGES" > /dev/null
pin() { if command -v taskset > /dev/null; then taskset -c 0 "$@"; else "$@"; fi; }
for round in 1 2; do
    echo "round $round"
    pin "$BIN" bench "$ROOT" --decode-only --workers 1 --json |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(f"  zune-jpeg (must-ds):  {d[\"decode_images_per_s\"]:7.0f} images/s ({d[\"decode_images\"]} images)")'
    pin python3 tools/bench/decoders.py "$ROOT" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(f"  {d[\"decoder\"]}: {d[\"images_per_s\"]:7.0f} images/s ({d[\"images\"]} images, {d[\"mean_pixels\"]:.0f} pixels each)")'
done
