#!/usr/bin/env bash
# The loader against the two PyTorch DataLoader baselines, side by side in
# one run, two alternating rounds: batch 32, 384×384, the four demo tasks,
# augmentation on, 2 workers each, on a demo corpus of 2,002 JPEGs
# (~480×360). Prints samples/s and the ratios.
#   pip install -r tools/bench/requirements.txt
#   tools/bench/compare.sh [ROOT] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="${1:-/tmp/must-bench-2k}"
IMAGES="${2:-2000}"
cargo build --release --quiet
BIN=target/release/must-ds
[ -d "$ROOT/_must" ] || "$BIN" demo "$ROOT" --images "$IMAGES" > /dev/null
out="$(mktemp)"
for round in 1 2; do
    "$BIN" bench "$ROOT" --workers 2 --json | python3 -c 'import json,sys; d=json.load(sys.stdin); d["variant"]="must-ds"; print(json.dumps(d))' >> "$out"
    python3 tools/bench/baselines.py "$ROOT" plain --workers 2 >> "$out"
    python3 tools/bench/baselines.py "$ROOT" tuned --workers 2 >> "$out"
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in range(2):
    m, p, t = rows[3 * r: 3 * r + 3]
    print(f"round {r + 1}: must-ds {m['samples_per_s']:.0f} samples/s (decode alone {m['decode_images_per_s']:.0f}/s, "
          f"pipeline +{100 * m['overhead_vs_decode']:.0f} %, peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB); "
          f"plain {p['samples_per_s']:.0f}/s; tuned {t['samples_per_s']:.0f}/s; "
          f"ratios {m['samples_per_s'] / p['samples_per_s']:.2f}x plain, {m['samples_per_s'] / t['samples_per_s']:.2f}x tuned")
PY
