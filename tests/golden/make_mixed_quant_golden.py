#!/usr/bin/env python3
"""A GGUF file that mixes tensor types as llama.cpp's _K_M recipes do, and the
logits its dequantised weights give, for test_golden_logits
(ctest golden_logits_tiny-llama-mixed-quants) and test_gguf.

  tests/golden/quants/tiny_llama_mixed.gguf
      a 2-layer llama (d_model 256, 2 heads of 16, 1 key/value head, d_mlp 32,
      vocabulary 32) on a Q4_0 base: output.weight in Q6_K (what llama.cpp's
      quantiser does to a Q4_0 file), some attention and MLP matrices in Q4_K,
      Q5_K, Q6_K, one in Q5_0, norms in F32. Q4_0 and Q5_0 are quantised by
      gguf-py; the K-quants (which gguf-py cannot quantise) are random blocks
      with scales chosen so that weights are about 0.1.
  tests/golden/tiny-llama-mixed-quants.json, .f32
      logits at every position of three prompts (format: tests/golden/README.md),
      from a float64 numpy forward (tests/golden/numpy_ref.py's llama_forward,
      llama.cpp's adjacent-pair RoPE on the file's row order) of the weights as
      gguf-py dequantises them. Nothing of hydra is used.

usage: python tests/golden/make_mixed_quant_golden.py [ROOT]   (needs: gguf numpy)
"""
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from numpy_ref import llama_forward, rope_adjacent  # noqa: E402

SEED = 20250720
CFG = dict(n_layers=2, d_model=256, n_heads=2, n_kv_heads=1, head_dim=16, d_mlp=32, vocab=32,
           theta=10000.0, eps=1e-5)

# Per tensor: its type. K-quants need rows of a multiple of 256 elements.
TYPES = {
    "token_embd.weight": T.Q4_0,
    "output.weight": T.Q6_K,
    "blk.0.attn_q.weight": T.Q4_K, "blk.0.attn_k.weight": T.Q4_K, "blk.0.attn_v.weight": T.Q6_K,
    "blk.0.attn_output.weight": T.Q4_0, "blk.0.ffn_gate.weight": T.Q4_K,
    "blk.0.ffn_up.weight": T.Q5_K, "blk.0.ffn_down.weight": T.Q5_0,
    "blk.1.attn_q.weight": T.Q4_0, "blk.1.attn_k.weight": T.Q4_0, "blk.1.attn_v.weight": T.Q5_K,
    "blk.1.attn_output.weight": T.Q4_0, "blk.1.ffn_gate.weight": T.Q5_K,
    "blk.1.ffn_up.weight": T.Q4_0, "blk.1.ffn_down.weight": T.Q4_0,
}


def f16_bytes(values):
    return np.asarray(values, dtype="<f2").reshape(-1, 1).view(np.uint8)


def k_quant_blocks(qtype, n_blocks, rng):
    """Random blocks whose weights come out about 0.1: random bits, scales set."""
    block_size, type_size = gguf.constants.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    jitter = rng.uniform(0.5, 1.5, size=n_blocks)
    if qtype == T.Q4_K:  # x = d sc q - dmin m; sc, m in 0..63, q in 0..15
        d = 4e-4 * jitter
        b[:, 0:2], b[:, 2:4] = f16_bytes(d), f16_bytes(7.5 * d)
    elif qtype == T.Q5_K:  # q in 0..31
        d = 2e-4 * jitter
        b[:, 0:2], b[:, 2:4] = f16_bytes(d), f16_bytes(15.5 * d)
    elif qtype == T.Q6_K:  # x = d sc (q - 32); sc int8
        b[:, 208:210] = f16_bytes(1e-4 * jitter)
    else:
        raise ValueError(qtype.name)
    return b


def make_tensor(name, rows, cols, rng):
    """(raw data as gguf-py writes it, float64 weights as gguf-py dequantises them)."""
    qtype = TYPES[name]
    if qtype in (T.Q4_0, T.Q5_0):
        raw = gguf.quants.quantize((rng.standard_normal((rows, cols)) * 0.1).astype(np.float32),
                                   qtype)
    else:
        block_size, _ = gguf.constants.GGML_QUANT_SIZES[qtype]
        raw = k_quant_blocks(qtype, rows * cols // block_size, rng).reshape(rows, -1)
    w = gguf.quants.dequantize(raw, qtype).astype(np.float64)
    assert w.shape == (rows, cols), (name, w.shape)
    return raw, w


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.relpath(root)
    rng = np.random.default_rng(SEED)
    c = CFG
    d, h, kv, hd, f, v = (c["d_model"], c["n_heads"], c["n_kv_heads"], c["head_dim"], c["d_mlp"],
                          c["vocab"])
    path = os.path.join(root, "tests", "golden", "quants", "tiny_llama_mixed.gguf")
    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint32("llama.block_count", c["n_layers"])
    w.add_uint32("llama.context_length", 64)
    w.add_uint32("llama.embedding_length", d)
    w.add_uint32("llama.feed_forward_length", f)
    w.add_uint32("llama.attention.head_count", h)
    w.add_uint32("llama.attention.head_count_kv", kv)
    w.add_uint32("llama.attention.key_length", hd)
    w.add_uint32("llama.attention.value_length", hd)
    w.add_uint32("llama.rope.dimension_count", hd)
    w.add_float32("llama.rope.freq_base", c["theta"])
    w.add_float32("llama.attention.layer_norm_rms_epsilon", c["eps"])
    w.add_uint32("general.file_type", 2)  # LLAMA_FTYPE_MOSTLY_Q4_0
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_key_value("tokenizer.ggml.tokens", [f"t{i}" for i in range(v)], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.token_type", [1] * v, gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("tokenizer.ggml.merges", ["t 1"], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)

    hf = {}  # numpy_ref's (Hugging Face) names, float64

    def add_matrix(name, hf_name, rows, cols):
        raw, weights = make_tensor(name, rows, cols, rng)
        w.add_tensor(name, raw, raw_shape=raw.shape, raw_dtype=TYPES[name])
        hf[hf_name] = weights

    def add_norm(name, hf_name):
        x = (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32)
        w.add_tensor(name, x)
        hf[hf_name] = x.astype(np.float64)

    add_matrix("token_embd.weight", "model.embed_tokens.weight", v, d)
    add_norm("output_norm.weight", "model.norm.weight")
    add_matrix("output.weight", "lm_head.weight", v, d)
    for layer in range(c["n_layers"]):
        p, q = f"blk.{layer}.", f"model.layers.{layer}."
        add_norm(p + "attn_norm.weight", q + "input_layernorm.weight")
        add_matrix(p + "attn_q.weight", q + "self_attn.q_proj.weight", h * hd, d)
        add_matrix(p + "attn_k.weight", q + "self_attn.k_proj.weight", kv * hd, d)
        add_matrix(p + "attn_v.weight", q + "self_attn.v_proj.weight", kv * hd, d)
        add_matrix(p + "attn_output.weight", q + "self_attn.o_proj.weight", d, h * hd)
        add_norm(p + "ffn_norm.weight", q + "post_attention_layernorm.weight")
        add_matrix(p + "ffn_gate.weight", q + "mlp.gate_proj.weight", f, d)
        add_matrix(p + "ffn_up.weight", q + "mlp.up_proj.weight", f, d)
        add_matrix(p + "ffn_down.weight", q + "mlp.down_proj.weight", d, f)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    # The file as gguf-py reads it back must hold the weights the reference uses.
    reader = gguf.GGUFReader(path)
    for t in reader.tensors:
        assert t.tensor_type == TYPES.get(t.name, T.F32), t.name

    hf_cfg = {"hidden_size": d, "num_attention_heads": h, "num_key_value_heads": kv,
              "num_hidden_layers": c["n_layers"], "head_dim": hd, "rms_norm_eps": c["eps"],
              "rope_theta": c["theta"]}
    prompts, rows = [], []
    for n in (1, 6, 17):
        ids = [int(i) for i in rng.integers(0, v, size=n)]
        logits = llama_forward(hf, hf_cfg, ids, rope_adjacent)
        top2 = np.sort(logits, axis=-1)[:, -2:]
        assert (top2[:, 1] - top2[:, 0] > 1e-3 * np.abs(logits).max()).all(), "argmax near a tie"
        prompts.append({"ids": ids, "positions": list(range(n)),
                        "argmax": [int(a) for a in logits.argmax(-1)]})
        rows.append(logits.astype(np.float32))
    golden = os.path.join(root, "tests", "golden", "tiny-llama-mixed-quants")
    np.concatenate(rows).astype("<f4").tofile(golden + ".f32")
    with open(golden + ".json", "w") as out:
        json.dump({"model": "tests/golden/quants/tiny_llama_mixed.gguf", "vocab": v,
                   "source": f"gguf-py {version('gguf')} dequantisation, numpy {np.__version__} "
                             "float64 forward (numpy_ref.llama_forward)",
                   "prompts": prompts, "logits_file": "tiny-llama-mixed-quants.f32"}, out)
        out.write("\n")
    scale = max(float(np.abs(r).max()) for r in rows)
    print(f"  {path}: {os.path.getsize(path)} bytes; logits scale {scale:.3g}")
    print(f"  {golden}.json, .f32: {sum(len(p['ids']) for p in prompts)} rows")


if __name__ == "__main__":
    main()
