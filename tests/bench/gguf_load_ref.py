#!/usr/bin/env python3
"""gguf-py's dequantisation of every tensor of a GGUF file to float32 (what
hydra's load does with the same tensors), timed: the reference beside
tests/bench/bench_load.c in tests/bench/gguf_load.sh. numpy runs one thread.

usage: gguf_load_ref.py FILE [--runs N]
prints: tensors=N stored_bytes=B runs=R median_s=S min_s=S stored_mb_per_s=R gguf=VERSION
"""
import argparse
import statistics
import time
from importlib.metadata import version

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    times, stored, n = [], 0, 0
    for _ in range(args.runs):
        t0 = time.perf_counter()
        reader = GGUFReader(args.file)
        stored, n = 0, 0
        for t in reader.tensors:
            x = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False)
            stored += t.n_bytes
            n += 1
            del x
        times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(f"tensors={n} stored_bytes={stored} runs={args.runs} median_s={med:.3f} "
          f"min_s={min(times):.3f} stored_mb_per_s={stored / med / 1e6:.1f} gguf={version('gguf')}")


if __name__ == "__main__":
    main()
