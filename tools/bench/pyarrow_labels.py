#!/usr/bin/env python3
# Usage: python3 tools/bench/pyarrow_labels.py DATASET OUT_DIR MUST_DS_BIN
# Rewrites every label file of a must-ds dataset with pyarrow's defaults
# (snappy, dictionary on, up to 1024 values a page), same row groups, and
# hands each to `must-ds add-labels --replace`.
import json, os, subprocess, sys, glob
import pyarrow.parquet as pq
root, out, bin_ = sys.argv[1], sys.argv[2], sys.argv[3]
log = sorted(glob.glob(f"{root}/_must/log/*.json"))
live = {}
for f in log:
    for a in json.load(open(f))["actions"]:
        if "add_labels" in a:
            l = a["add_labels"]; live[(l["task"], l["shard"])] = l["path"]
os.makedirs(out, exist_ok=True)
for (task, shard), path in sorted(live.items()):
    pf = pq.ParquetFile(f"{root}/{path}")
    t = pf.read()
    rgs = [pf.metadata.row_group(i).num_rows for i in range(pf.metadata.num_row_groups)]
    dst = f"{out}/{task}-{shard}.parquet"
    w = pq.ParquetWriter(dst, t.schema.remove_metadata().with_metadata(pf.schema_arrow.metadata))
    off = 0
    for n in rgs:
        w.write_table(t.slice(off, n), row_group_size=n); off += n
    w.close()
    subprocess.run([bin_, "add-labels", root, "--task", task, "--shard", str(shard), dst, "--replace"], check=True, stdout=subprocess.DEVNULL)
print("rewrote", len(live), "files")
