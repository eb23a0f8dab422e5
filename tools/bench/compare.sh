#!/usr/bin/env bash
# The loader against the two PyTorch DataLoader baselines, side by side in
# one run, two alternating rounds per corpus: batch 32, 384×384, the four
# demo tasks, augmentation on, 2 workers each, 2 epochs for must-ds. Two
# demo corpora of 2,002 JPEGs (~480×360): one with masks at 1/4 and depth at
# 1/8 of the image, one with masks (and confidence) and depth at the
# image's full resolution. must-ds also runs at label_stride 4 on the
# full-resolution corpus. After each `must-ds bench`, the same epochs through
# the Python package (tools/bench/python_loader.py: a plain loop over
# must_ds.Loader). Prints samples/s, the floor, peak RSS and ratios.
#   pip install -r tools/bench/requirements.txt ./python
#   tools/bench/compare.sh [ROOT_PREFIX] [IMAGES]
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFIX="${1:-/tmp/must-bench-2k}"
IMAGES="${2:-2000}"
cargo build --release --quiet
BIN=target/release/must-ds
REDUCED="$PREFIX"
FULL="$PREFIX-full"
[ -d "$REDUCED/_must" ] || "$BIN" demo "$REDUCED" --images "$IMAGES" > /dev/null
[ -d "$FULL/_must" ] || "$BIN" demo "$FULL" --images "$IMAGES" --full-res-maps > /dev/null
out="$(mktemp)"
for corpus in "$REDUCED" "$FULL"; do
    for round in 1 2; do
        for stride in 1 4; do
            if [ "$stride" = 4 ] && [ "$corpus" = "$REDUCED" ]; then continue; fi
            "$BIN" bench "$corpus" --workers 2 --epochs 2 --label-stride "$stride" --json |
                python3 -c 'import json,sys; d=json.load(sys.stdin); d["variant"]="must-ds"; d["corpus"]=sys.argv[1]; d["round"]=int(sys.argv[2]); print(json.dumps(d))' "$corpus" "$round" >> "$out"
            python3 tools/bench/python_loader.py "$corpus" --workers 2 --epochs 2 --label-stride "$stride" |
                python3 -c 'import json,sys; d=json.load(sys.stdin); d["corpus"]=sys.argv[1]; d["round"]=int(sys.argv[2]); print(json.dumps(d))' "$corpus" "$round" >> "$out"
        done
        for v in plain tuned; do
            python3 tools/bench/baselines.py "$corpus" "$v" --workers 2 |
                python3 -c 'import json,sys; d=json.load(sys.stdin); d["corpus"]=sys.argv[1]; d["round"]=int(sys.argv[2]); print(json.dumps(d))' "$corpus" "$round" >> "$out"
        done
    done
done
python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for corpus in dict.fromkeys(r["corpus"] for r in rows):
    print(corpus)
    for rnd in (1, 2):
        rs = [r for r in rows if r["corpus"] == corpus and r["round"] == rnd]
        base = {r["variant"]: r["samples_per_s"] for r in rs if r["variant"] in ("plain", "tuned")}
        py = {r["label_stride"]: r for r in rs if r["variant"] == "python"}
        for m in (r for r in rs if r["variant"] == "must-ds"):
            rate = m["samples_per_s"]
            print(f"  round {rnd}, label_stride {m['label_stride']}: must-ds {rate:.0f} samples/s, "
                  f"floor {m['floor_samples_per_s']:.0f} (x{rate and m['floor_samples_per_s'] / rate:.2f} of it), "
                  f"decode alone {m['decode_images_per_s']:.0f}/s, read alone {m['read_rows_per_s']:.0f} rows/s, "
                  f"peak RSS {m['peak_rss_bytes'] / 2**20:.0f} MiB; plain {base['plain']:.0f}/s, tuned {base['tuned']:.0f}/s; "
                  f"{rate / base['plain']:.2f}x plain, {rate / base['tuned']:.2f}x tuned")
            p = py.get(m["label_stride"])
            if p:
                print(f"    python must_ds.Loader: {p['samples_per_s']:.0f} samples/s = x{p['samples_per_s'] / rate:.2f} of must-ds bench, "
                      f"peak RSS {p['peak_rss_bytes'] / 2**20:.0f} MiB ({p['rss_before_loader_bytes'] / 2**20:.0f} MiB before the loader: python + torch)")
PY
