#!/usr/bin/env python3
"""A llama GGUF whose matrices mix the block types a native load keeps with
those it dequantises to fp32 at load (IQ4_NL, MXFP4 projections, an MXFP4
token embedding, an IQ4_NL output.weight), and its logits from
`transformers` loading the file (`gguf_file=`, which dequantises with
gguf-py): nothing of hydra is used.

  tests/data/gguf/arch-llama-dequant-mix.gguf   the file (make_gguf_arch_golden's tiny llama,
                                                its matrices retyped; about 40 KB)
  tests/golden/gguf-llama-dequant-mix.json/.f32 its logits at every position of three
                                                prompts (1, 7, 23 random ids)

IQ4_NL, which gguf-py cannot quantise, is written as random blocks with a
small fp16 scale; the others are quantised from the model's weights by
gguf.quants.quantize. The logits are those of the file, whatever its
weights.

usage: python tests/golden/make_gguf_dequant_golden.py [ROOT]   (needs: torch transformers gguf numpy)
"""
import os
import sys

import gguf
import numpy as np
import torch
from gguf import GGMLQuantizationType as T
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_gguf_arch_golden as A  # noqa: E402

SEED = 6100
# suffix -> type, first match wins; every matrix here is 32 or 64 wide
TYPES = [("blk.0.attn_q.weight", T.IQ4_NL), ("blk.1.attn_q.weight", T.Q8_0),
         ("attn_k.weight", T.MXFP4), ("attn_v.weight", T.Q4_1), ("attn_output.weight", T.IQ4_NL),
         ("blk.0.ffn_gate.weight", T.MXFP4), ("ffn_gate.weight", T.Q5_0),
         ("ffn_up.weight", T.IQ4_NL), ("ffn_down.weight", T.Q5_1), ("token_embd.weight", T.MXFP4),
         ("output.weight", T.IQ4_NL)]


def iq4_nl_blocks(shape, rng):
    """Random IQ4_NL blocks (fp16 d, 16 bytes of 4-bit indices) with d in [0.002, 0.02]."""
    rows, cols = shape
    nb = rows * cols // 32
    raw = rng.integers(0, 256, size=(nb, 18), dtype=np.uint8)
    raw[:, 0:2] = rng.uniform(0.002, 0.02, size=nb).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return raw.reshape(rows, cols // 32 * 18)


def retype(w):
    rng = np.random.default_rng(SEED + 3)
    new = {}
    for name, ti in w.tensors[0].items():
        qtype = next((t for suffix, t in TYPES if name.endswith(suffix)), None)
        if qtype is None:
            new[name] = ti
            continue
        data = ti.tensor.astype(np.float32)
        q = iq4_nl_blocks(data.shape, rng) if qtype == T.IQ4_NL else gguf.quants.quantize(data, qtype)
        shape = gguf.quants.quant_shape_from_byte_shape(q.shape, qtype)
        new[name] = gguf.gguf_writer.TensorInfo(shape=shape, dtype=qtype, nbytes=q.nbytes, tensor=q)
    w.tensors[0] = new


def main():
    root = os.path.relpath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    torch.set_num_threads(1)
    arch, cls, config, _, _ = A.MODELS["llama"]
    model = A.make_model(cls, config(), SEED)
    rel = "tests/data/gguf/arch-llama-dequant-mix.gguf"
    path = os.path.join(root, rel)
    A.convert(model, arch, path, "tiny-llama-dequant-mix", retype)
    loaded = AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32,
        attn_implementation="eager").eval()
    rng = np.random.default_rng(SEED + 2)
    prompts = [[int(t) for t in rng.integers(0, A.VOCAB, size=n)] for n in A.PROMPT_LENS]
    logits = A.run_prompts(loaded, prompts)
    print(f"{path}: {os.path.getsize(path)} bytes")
    A.write_golden(root, "llama-dequant-mix", rel, prompts, logits,
                   f"{A.SOURCE}; transformers loading the GGUF (gguf_file=)")


if __name__ == "__main__":
    main()
