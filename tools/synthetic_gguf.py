#!/usr/bin/env python3
"""A seeded random model of a published shape, written as a GGUF file, for
benchmarks at scale without a download (and tiny ones for tests).

The weights are random blocks of the chosen GGUF block type, written
directly (nothing is quantised, so an 8B file takes seconds of numpy, then the
disk's time): every fp16 scale field is set so that a weight is about
1/sqrt(columns), norms are 1, and the rest of each block is random bytes. The
numbers mean nothing; the shapes, types and sizes are those of the published
model. No tokenizer is written: jobs give token ids (a job's "prompts" as
lists of ids).

  --shape   one of SHAPES below (llama-3-8b, llama-3-70b, llama-2-7b,
            qwen2.5-7b, gemma-2-9b, tiny-llama, tiny-qwen2; gemma-2-9b as
            llama.cpp writes gemma2: no output.weight (the tied embedding
            takes the output's type), post-attention and post-FFN norms,
            soft-caps 50 and 30, a 4096 window on every other layer)
  --type    Q4_K_M: llama.cpp's recipe (Q4_K matrices; attn_v and ffn_down
            in Q6_K in the first and last eighths of the layers and every
            third layer between, output.weight in Q6_K); or one block type
            for every matrix: Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q4_K Q5_K Q6_K F16 F32
  --layers  keep only the first N layers (a shorter model of the same width)

usage: python tools/synthetic_gguf.py --shape llama-3-8b --type Q4_K_M OUT.gguf
       [--seed N] [--layers N]        (needs: gguf numpy; /work/venv-ref has them)
then:  hydra run --model OUT.gguf --weights-dtype native JOB.json
"""
import argparse
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

# name: (arch, n_layers, d_model, n_heads, n_kv_heads, head_dim, d_mlp, vocab,
#        rope_theta, norm_eps, qkv_bias)
SHAPES = {
    "llama-3-8b": ("llama", 32, 4096, 32, 8, 128, 14336, 128256, 500000.0, 1e-5, False),
    "llama-3-70b": ("llama", 80, 8192, 64, 8, 128, 28672, 128256, 500000.0, 1e-5, False),
    "llama-2-7b": ("llama", 32, 4096, 32, 32, 128, 11008, 32000, 10000.0, 1e-5, False),
    "qwen2.5-7b": ("qwen2", 28, 3584, 28, 4, 128, 18944, 152064, 1000000.0, 1e-6, True),
    "gemma-2-9b": ("gemma2", 42, 3584, 16, 8, 256, 14336, 256000, 10000.0, 1e-6, False),
    "tiny-llama": ("llama", 4, 256, 4, 2, 64, 512, 1024, 10000.0, 1e-5, False),
    "tiny-qwen2": ("qwen2", 4, 256, 4, 2, 64, 512, 1024, 1000000.0, 1e-6, True),
}
READABLE_ARCHS = ("llama", "qwen2", "gemma2")

BLOCK_TYPES = {name: getattr(T, name)
               for name in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K",
                            "F16", "F32")}

# Where each type keeps its fp16 scales (llama.cpp's ggml-common.h), and the
# multiplier m that makes a weight about m * d: a scale d of target / m.
SCALES = {
    T.Q4_0: ((0,), 4.0), T.Q4_1: ((0,), 8.0), T.Q5_0: ((0,), 8.0), T.Q5_1: ((0,), 16.0),
    T.Q8_0: ((0,), 64.0), T.Q4_K: ((0, 2), 240.0), T.Q5_K: ((0, 2), 480.0),
    T.Q6_K: ((208,), 1024.0),
}
MINS = {T.Q4_1: 2, T.Q5_1: 2}  # fp16 m: x = d q + m, set to -target (q is unsigned)


def use_more_bits(layer, n_layers):
    """llama.cpp's Q4_K_M choice of layers whose attn_v and ffn_down get Q6_K."""
    return (layer < n_layers // 8 or layer >= 7 * n_layers // 8
            or (layer - n_layers // 8) % 3 == 2)


def matrix_type(recipe, name, layer, n_layers):
    if recipe != "Q4_K_M":
        return BLOCK_TYPES[recipe]
    if name == "output.weight":
        return T.Q6_K
    if name.endswith(("attn_v.weight", "ffn_down.weight")) and use_more_bits(layer, n_layers):
        return T.Q6_K
    return T.Q4_K


def random_matrix(qtype, rows, cols, rng):
    """(array to write, element shape) of a rows x cols matrix in qtype."""
    target = 1.0 / np.sqrt(cols)
    if qtype == T.F32:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * target), (rows, cols)
    if qtype == T.F16:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * target).astype(np.float16), \
            (rows, cols)
    block, size = gguf.constants.GGML_QUANT_SIZES[qtype]
    if cols % block:
        sys.exit(f"synthetic_gguf: {cols} columns are not whole {qtype.name} blocks of {block}")
    n_blocks = rows * cols // block
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    offsets, mult = SCALES[qtype]
    scale = np.float16(target / mult).view(np.uint16)
    for off in offsets:
        raw[:, off:off + 2] = np.frombuffer(np.uint16(scale).tobytes(), dtype=np.uint8)
    if qtype in MINS:
        m = np.float16(-target).view(np.uint16)
        raw[:, MINS[qtype]:MINS[qtype] + 2] = np.frombuffer(np.uint16(m).tobytes(), dtype=np.uint8)
    return raw.reshape(rows, -1), (rows, cols)


def plan(shape, recipe, n_layers):
    """[(name, kind, rows, cols, type)] in file order; kind: matrix, norm, bias."""
    arch, _, d, h, kv, hd, f, v, _, _, qkv_bias = shape
    tied = arch == "gemma2"  # llama.cpp's quantizer gives a tied embedding the output's type
    out = [("token_embd.weight", "matrix", v, d,
            matrix_type(recipe, "output.weight" if tied else "token_embd.weight", 0, 1)),
           ("output_norm.weight", "norm", 1, d, T.F32)]
    if not tied:
        out.append(("output.weight", "matrix", v, d, matrix_type(recipe, "output.weight", 0, 1)))
    for i in range(n_layers):
        p = f"blk.{i}."
        mats = [("attn_q.weight", h * hd, d), ("attn_k.weight", kv * hd, d),
                ("attn_v.weight", kv * hd, d), ("attn_output.weight", d, h * hd),
                ("ffn_gate.weight", f, d), ("ffn_up.weight", f, d), ("ffn_down.weight", d, f)]
        out.append((p + "attn_norm.weight", "norm", 1, d, T.F32))
        for name, rows, cols in mats:
            out.append((p + name, "matrix", rows, cols, matrix_type(recipe, p + name, i, n_layers)))
        if qkv_bias:
            for name, n in (("attn_q.bias", h * hd), ("attn_k.bias", kv * hd),
                            ("attn_v.bias", kv * hd)):
                out.append((p + name, "bias", 1, n, T.F32))
        out.append((p + "ffn_norm.weight", "norm", 1, d, T.F32))
        if arch == "gemma2":
            out += [(p + "post_attention_norm.weight", "norm", 1, d, T.F32),
                    (p + "post_ffw_norm.weight", "norm", 1, d, T.F32)]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--shape", required=True, choices=sorted(SHAPES))
    ap.add_argument("--type", default="Q4_K_M", choices=["Q4_K_M"] + sorted(BLOCK_TYPES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layers", type=int, default=0, help="first N layers only (0: all)")
    a = ap.parse_args()
    shape = SHAPES[a.shape]
    arch, n_layers, d, h, kv, hd, f, v, theta, eps, _ = shape
    if arch not in READABLE_ARCHS:
        sys.exit(f"synthetic_gguf: {a.shape} needs the GGUF architecture '{arch}', which hydra's "
                 f"GGUF loader does not read yet (it reads {', '.join(READABLE_ARCHS)})")
    if a.layers < 0 or a.layers > n_layers:
        sys.exit(f"synthetic_gguf: --layers must be in 0..{n_layers}")
    n_layers = a.layers or n_layers
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out, arch=arch)
    w.add_string("general.name", f"synthetic {a.shape} {a.type} seed {a.seed}")
    w.add_uint32(f"{arch}.block_count", n_layers)
    w.add_uint32(f"{arch}.context_length", 8192)
    w.add_uint32(f"{arch}.embedding_length", d)
    w.add_uint32(f"{arch}.feed_forward_length", f)
    w.add_uint32(f"{arch}.attention.head_count", h)
    w.add_uint32(f"{arch}.attention.head_count_kv", kv)
    w.add_uint32(f"{arch}.attention.key_length", hd)
    w.add_uint32(f"{arch}.attention.value_length", hd)
    w.add_uint32(f"{arch}.rope.dimension_count", hd)
    w.add_float32(f"{arch}.rope.freq_base", theta)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", eps)
    if arch == "gemma2":  # Gemma2Model.set_gguf_parameters
        w.add_float32(f"{arch}.attn_logit_softcapping", 50.0)
        w.add_float32(f"{arch}.final_logit_softcapping", 30.0)
        w.add_uint32(f"{arch}.attention.sliding_window", 4096)
    tensors = plan(shape, a.type, n_layers)
    for name, kind, rows, cols, qtype in tensors:
        if kind != "matrix":
            w.add_tensor_info(name, (cols,), np.dtype(np.float32), cols * 4)
            continue
        block, size = gguf.constants.GGML_QUANT_SIZES[qtype]
        nbytes = rows * cols // block * size
        dtype = {T.F32: np.float32, T.F16: np.float16}.get(qtype, np.uint8)
        if qtype in (T.F32, T.F16):
            w.add_tensor_info(name, (rows, cols), np.dtype(dtype), nbytes)
        else:  # gguf-py takes a quantised tensor's shape in bytes per row
            w.add_tensor_info(name, (rows, nbytes // rows), np.dtype(dtype), nbytes, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    total = 0
    for name, kind, rows, cols, qtype in tensors:
        if kind == "norm":
            arr = np.ones(cols, dtype=np.float32)
        elif kind == "bias":
            arr = (0.02 * rng.standard_normal(cols)).astype(np.float32)
        else:
            arr, _ = random_matrix(qtype, rows, cols, rng)
        w.write_tensor_data(arr)
        total += arr.nbytes
    w.close()
    print(f"synthetic_gguf: {a.out}: {a.shape} ({n_layers} layers), {a.type}, seed {a.seed}, "
          f"{total / 2**30:.2f} GiB of tensors")


if __name__ == "__main__":
    main()
