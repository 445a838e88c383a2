#!/usr/bin/env python3
"""Random models and prompts for the GPU benchmark (tests/gpu/run.sh).

Real checkpoints cannot travel to the device machine (no network there, and
the working tree that travels is capped at 64 MiB), so the benchmark runs on
models of real shapes with weights drawn at random by transformers' own
initialisation, then every bias and norm weight redrawn too (nothing is zero
or exactly one: zeros hide unwritten outputs and can run faster than data).

  gpt2-small   GPT-2 small's shape: 12 layers, d 768, 12 heads, MLP 3072,
               vocab 50257 (transformers' GPT2Config defaults)
  llama7b-L4   Llama-7B's layer shape (d 4096, 32 heads, MLP 11008, SwiGLU,
               RoPE, vocab 32000) with 4 of its 32 layers: 1.0 B parameters,
               4.4 GB in fp32; the sweep's cost per layer is that of the 7B
  llama7b      the whole Llama-7B shape (32 layers, 6.7 B parameters), saved
               in bf16 (13.5 GB on disk; 27 GB of GPU memory in fp32, 13.5 GB
               with hydra's --weights-dtype bf16). Opt-in, not in the default
               --which: GPU_MODELS=llama7b:64 GPU_SWEEPS=llama7b:16:fp32:bf16
               bash tests/gpu/run.sh

usage: make_models.py OUTDIR [--seed S] [--which gpt2-small:1209,llama7b-L4:256]
Writes OUTDIR/NAME/{config.json,model.safetensors} and OUTDIR/prompts-NAME.json
(NAME:N: N prompts of random ids, 8 to 16 tokens each, in bench_sweep's format).
"""
import argparse
import json
import os

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM


def redraw_small(model, g):
    """Biases and norm weights from transformers' init are 0 and 1: redraw them."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                base = 1.0 if ("ln" in name or "norm" in name) and "bias" not in name else 0.0
                p.copy_(base + 0.02 * torch.randn(p.shape, generator=g, device=p.device))


def build(name):
    if name == "gpt2-small":
        return GPT2LMHeadModel(GPT2Config())
    if name in ("llama7b-L4", "llama7b"):
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008,
                          num_hidden_layers=4 if name == "llama7b-L4" else 32,
                          num_attention_heads=32, num_key_value_heads=32, vocab_size=32000,
                          max_position_embeddings=4096, rms_norm_eps=1e-5,
                          tie_word_embeddings=False)
        return LlamaForCausalLM(cfg)
    raise SystemExit(f"make_models.py: unknown model {name}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--which", default="gpt2-small:1209,llama7b-L4:256")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    for item in a.which.split(","):
        name, n_prompts = item.split(":")
        n_prompts = int(n_prompts)
        path = os.path.join(a.outdir, name)
        with torch.device(dev):
            model = build(name)
        g = torch.Generator(device=dev).manual_seed(a.seed)
        redraw_small(model, g)
        if name == "llama7b":
            model.to(torch.bfloat16)
        model.save_pretrained(path, safe_serialization=True, max_shard_size="20GB")
        for f in os.listdir(path):  # config.json + safetensors only
            if f not in ("config.json",) and not f.endswith((".safetensors", ".json")):
                os.remove(os.path.join(path, f))
        V = model.config.vocab_size
        rng = torch.Generator().manual_seed(a.seed + 7)
        prompts = []
        for _ in range(n_prompts):
            n = int(torch.randint(8, 17, (1,), generator=rng))
            prompts.append({"ids": torch.randint(0, V, (n,), generator=rng).tolist()})
        with open(os.path.join(a.outdir, f"prompts-{name}.json"), "w") as f:
            json.dump({"model": name, "prompts": prompts}, f)
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_params / 1e6:.1f} M parameters, {n_prompts} prompts -> {path}")
        del model
        if dev == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
