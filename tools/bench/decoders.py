#!/usr/bin/env python3
"""Decodes every embedded JPEG of a must-ds corpus once with libjpeg-turbo,
on one thread, and prints images/s as JSON: the libjpeg-turbo side of the
decoder comparison in BENCHMARKS.md (tools/bench/decoders.sh runs both).

Uses PyTurboJPEG (`pip install PyTurboJPEG`, needs the system's
libturbojpeg) when it imports, else simplejpeg (tools/bench/requirements.txt),
which bundles libjpeg-turbo. Both decode to RGB at full size.

    python3 tools/bench/decoders.py CORPUS [--decoder turbojpeg|simplejpeg]
"""
import argparse
import glob
import json
import os
import time

import pyarrow.parquet as pq


def decoder(name):
    if name in (None, "turbojpeg"):
        try:
            from turbojpeg import TJPF_RGB, TurboJPEG

            tj = TurboJPEG()
            return "turbojpeg", lambda b: tj.decode(b, pixel_format=TJPF_RGB)
        except Exception:
            if name == "turbojpeg":
                raise
    import simplejpeg

    return "simplejpeg", lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("--decoder", choices=["turbojpeg", "simplejpeg"])
    a = ap.parse_args()
    images = []
    for f in sorted(glob.glob(os.path.join(a.corpus, "images", "*.parquet"))):
        col = pq.read_table(f, columns=["image"]).column("image")
        images.extend(b for b in col.to_pylist() if b is not None)
    name, decode = decoder(a.decoder)
    decode(images[0])  # warm up
    t0 = time.perf_counter()
    pixels = 0
    for b in images:
        px = decode(b)
        pixels += px.shape[0] * px.shape[1]
    t = time.perf_counter() - t0
    print(json.dumps({
        "decoder": f"libjpeg-turbo ({name})", "images": len(images), "seconds": t,
        "images_per_s": len(images) / t, "mean_pixels": pixels / len(images),
    }))


if __name__ == "__main__":
    main()
