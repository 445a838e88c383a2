"""PyTorch side of tests/bench/run.sh: the same model through Hugging Face
transformers (from the same GGUF, dequantised to fp32), the same token ids,
the same thread count. Prints one key=value line like bench_forward."""
import argparse
import os
import statistics
import time

import torch
from transformers import AutoModelForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--ids", required=True, help="file: one sequence of ids per line")
ap.add_argument("--runs", type=int, default=5)
ap.add_argument("--threads", type=int, default=os.cpu_count())
a = ap.parse_args()

torch.set_num_threads(a.threads)
ids = torch.tensor([[int(t) for t in line.split()] for line in open(a.ids) if line.strip()])
kw = dict(torch_dtype=torch.float32, attn_implementation="sdpa")
if a.model.endswith(".gguf"):
    model = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(a.model), gguf_file=os.path.basename(a.model), **kw)
else:
    model = AutoModelForCausalLM.from_pretrained(a.model, **kw)
model.eval()
times = []
with torch.no_grad():
    model(ids)  # warm-up
    for _ in range(a.runs):
        t0 = time.perf_counter()
        model(ids)
        times.append(time.perf_counter() - t0)
t = statistics.median(times)
print(f"backend=torch-{torch.__version__} batch={ids.shape[0]} tokens={ids.shape[1]} "
      f"runs={a.runs} median_s={t:.4f} tokens_per_s={ids.numel() / t:.1f}")
