"""The must_ds Python loader in a plain training loop, measured as
`must-ds bench` measures the Rust loader: all tasks, the same options,
start-up included, batches freed as the loop moves on (their buffers go
back to the loader). Prints one JSON line.

Usage: python3 tools/bench/python_loader.py ROOT [--workers 2] [--epochs 2]
       [--batch-size 32] [--size 384] [--label-stride 1]
"""
import argparse
import json
import resource
import time

import torch  # noqa: F401  (batches as torch tensors, as a trainer gets them)

import must_ds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=384)
    ap.add_argument("--label-stride", type=int, default=1)
    a = ap.parse_args()
    tasks = sorted(must_ds.Dataset(a.root).tasks)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    loader = must_ds.Loader(a.root, tasks, batch_size=a.batch_size, size=a.size, workers=a.workers,
                            label_stride=a.label_stride)
    samples = 0
    for _ in range(a.epochs):
        for batch in loader:
            # Padding slots have no id; counting in Python keeps torch's
            # thread pool out of the measurement.
            samples += sum(1 for i in batch["image_ids"] if i)
    secs = time.perf_counter() - t0
    print(json.dumps({
        "variant": "python", "samples": samples, "seconds": secs, "samples_per_s": samples / secs,
        "label_stride": a.label_stride, "workers": a.workers, "tasks": tasks,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_before_loader_bytes": rss_before, "metrics": loader.metrics(),
    }))


if __name__ == "__main__":
    main()
