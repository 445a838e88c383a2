#!/usr/bin/env python3
"""Writes the GGUF goldens for tests/unit/formats/test_gguf.c with gguf-py (llama.cpp's
own GGUF writer and quantiser), so that the C reader is checked against a
program hydra did not write.

  tests/data/gguf/quant_types.gguf      one tensor per type F32, F16, BF16, Q8_0,
                                   Q4_0, Q4_1 (quantised by gguf.quants.quantize)
                                   and, as F32 tensors "expected.<name>", their
                                   values decoded by gguf.quants.dequantize; plus
                                   metadata of every kind the reader exposes.
  tests/data/gguf/tiny_llama.gguf       a 2-layer llama as llama.cpp's converter lays
                                   it out (q/k rows permuted for ggml's RoPE,
                                   no output.weight, so tied), with a tokenizer.
  tests/data/gguf/tiny_llama_expected.gguf
                                   the Hugging Face layout of its q/k weights,
                                   i.e. the weights before the converter's
                                   permutation, as F16 (exact).
  tests/data/gguf/tiny_llama_missing.gguf   a llama without blk.1.ffn_up.weight.
  tests/data/gguf/tiny_llama_badshape.gguf  a llama whose blk.1.attn_k.weight has
                                       the wrong number of rows.

usage: python tests/golden/make_gguf_golden.py [ROOT]   (needs: gguf numpy)
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

SEED = 20240611


def quant_types(path):
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(path, arch="test")
    w.add_custom_alignment(64)
    w.add_uint32("test.u32", 3000000000)
    w.add_int32("test.i32", -7)
    w.add_float32("test.f32", 0.15625)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "h\u00e9llo gguf")
    w.add_key_value("test.strings", ["alpha", "", "\u0120the", "a b"], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value("test.ints", [3, -1, 2147483647, -2147483648], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("test.floats", [0.5, -2.25, 1e-3], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.FLOAT32)

    # Rows of different scales and offsets, so that every block has its own d
    # (and m); shape [3, 64] numpy = ne [64, 3] in GGUF.
    base = rng.standard_normal((3, 64)).astype(np.float32)
    base *= np.array([[0.02], [1.0], [37.0]], dtype=np.float32)
    base += np.array([[0.0], [0.5], [-3.0]], dtype=np.float32)
    for name, qtype in [("f32", T.F32), ("f16", T.F16), ("bf16", T.BF16), ("q8_0", T.Q8_0),
                        ("q4_0", T.Q4_0), ("q4_1", T.Q4_1)]:
        q = gguf.quants.quantize(base, qtype)
        w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        deq = gguf.quants.dequantize(q, qtype).astype(np.float32)
        assert deq.shape == base.shape
        w.add_tensor("expected." + name, deq)
    # fp16 edge cases, each tensor on its own scale (the bound is relative to
    # the tensor's largest value): subnormals, signed zeros and the smallest
    # normals; then the largest finite values.
    small = np.concatenate([
        np.array([0.0, -0.0, 6e-8, -6e-8, 1.2e-7, 3e-5, -3e-5, 6.1e-5, -6.1e-5, 6.2e-5],
                 dtype=np.float32),
        (rng.standard_normal(22) * 2e-5).astype(np.float32)]).reshape(1, 32)
    large = np.concatenate([
        np.array([65504.0, -65504.0, 32768.0, -1.0], dtype=np.float32),
        (rng.standard_normal(28) * 2e4).astype(np.float32)]).reshape(1, 32)
    for name, arr in [("f16_small", small), ("f16_large", large)]:
        q = gguf.quants.quantize(arr, T.F16)
        assert np.isfinite(q).all()
        w.add_tensor(name, q, raw_dtype=T.F16)
        w.add_tensor("expected." + name, gguf.quants.dequantize(q, T.F16).astype(np.float32))
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llamacpp_permute(weights, n_head, n_head_kv):
    """convert_hf_to_gguf.py's LlamaModel.permute: Hugging Face rows -> GGUF rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def transformers_reverse_permute(weights, n_head, num_kv_heads=None):
    """transformers' LlamaTensorProcessor._reverse_permute_weights (GGUF -> HF)."""
    if num_kv_heads is not None and n_head != num_kv_heads:
        n_head = num_kv_heads
    dim = weights.shape[0] // n_head // 2
    w = weights.reshape(n_head, dim, 2, *weights.shape[1:])
    return w.swapaxes(2, 1).reshape(weights.shape)


def check_against_transformers(gguf_w, n_head, n_kv, want):
    try:
        from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor
    except Exception as e:  # transformers is optional here
        print(f"  (transformers not importable, skipped its cross-check: {e})")
        return
    got = LlamaTensorProcessor()._reverse_permute_weights(gguf_w, n_head, n_kv)
    assert np.array_equal(got, want), "transformers disagrees with the reference un-permutation"


def tiny_llama(path, expected_path, cfg, drop=None, bad_shape=None, seed=SEED + 1, special=None):
    rng = np.random.default_rng(seed)
    d, nh, nkv, f, v = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"], cfg["d_mlp"], cfg["vocab"]
    hd = d // nh

    def mat(rows, cols):  # fp16-representable, so F16 storage is exact
        return (rng.standard_normal((rows, cols)) * 0.1).astype(np.float16)

    w = gguf.GGUFWriter(path, arch="llama")
    w.add_uint32("llama.block_count", cfg["n_layers"])
    w.add_uint32("llama.context_length", 64)
    w.add_uint32("llama.embedding_length", d)
    w.add_uint32("llama.feed_forward_length", f)
    w.add_uint32("llama.attention.head_count", nh)
    w.add_uint32("llama.attention.head_count_kv", nkv)
    w.add_float32("llama.rope.freq_base", 50000.0)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_uint32("llama.rope.dimension_count", hd)
    w.add_string("tokenizer.ggml.model", "gpt2")
    tokens = [f"t{i}" for i in range(v - 2)] + ["<s>", "</s>"]
    w.add_key_value("tokenizer.ggml.tokens", tokens, gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)
    w.add_key_value("tokenizer.ggml.token_type", [1] * (v - 2) + [3, 3], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.INT32)
    w.add_key_value("tokenizer.ggml.scores", [float(-i) for i in range(v)],
                    gguf.GGUFValueType.ARRAY, sub_type=gguf.GGUFValueType.FLOAT32)
    w.add_key_value("tokenizer.ggml.merges", ["t 1", "t 2"], gguf.GGUFValueType.ARRAY,
                    sub_type=gguf.GGUFValueType.STRING)
    if special is None:
        special = {"bos_token_id": v - 2, "eos_token_id": v - 1}
    for key, token_id in special.items():
        w.add_uint32("tokenizer.ggml." + key, token_id)

    expected = {}

    def add(name, arr):
        if name == drop:
            return
        if name == bad_shape:
            arr = arr[: arr.shape[0] - 1]
        w.add_tensor(name, arr)

    add("token_embd.weight", mat(v, d))
    add("output_norm.weight", (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32))
    for l in range(cfg["n_layers"]):
        p = f"blk.{l}."
        add(p + "attn_norm.weight", (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        q_hf, k_hf = mat(nh * hd, d), mat(nkv * hd, d)
        q_gguf, k_gguf = llamacpp_permute(q_hf, nh, nh), llamacpp_permute(k_hf, nh, nkv)
        assert not np.array_equal(q_gguf, q_hf)
        assert np.array_equal(transformers_reverse_permute(q_gguf, nh, nh), q_hf)
        assert np.array_equal(transformers_reverse_permute(k_gguf, nh, nkv), k_hf)
        check_against_transformers(q_gguf, nh, nh, q_hf)
        check_against_transformers(k_gguf, nh, nkv, k_hf)
        expected[p + "attn_q.weight"], expected[p + "attn_k.weight"] = q_hf, k_hf
        add(p + "attn_q.weight", q_gguf)
        add(p + "attn_k.weight", k_gguf)
        add(p + "attn_v.weight", mat(nkv * hd, d))
        add(p + "attn_output.weight", mat(d, nh * hd))
        add(p + "ffn_norm.weight", (1.0 + 0.1 * rng.standard_normal(d)).astype(np.float32))
        add(p + "ffn_gate.weight", mat(f, d))
        add(p + "ffn_up.weight", mat(f, d))
        add(p + "ffn_down.weight", mat(d, f))
    finish(w)
    if expected_path:
        e = gguf.GGUFWriter(expected_path, arch="test")
        for name, arr in expected.items():
            e.add_tensor(name, arr)
        finish(e)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    data = os.path.join(root, "tests", "data", "gguf")
    os.makedirs(data, exist_ok=True)
    quant_types(os.path.join(data, "quant_types.gguf"))
    tiny = dict(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, d_mlp=16, vocab=20)
    tiny_llama(os.path.join(data, "tiny_llama.gguf"), os.path.join(data, "tiny_llama_expected.gguf"),
               tiny)
    small = dict(n_layers=2, d_model=8, n_heads=2, n_kv_heads=1, d_mlp=8, vocab=8)
    tiny_llama(os.path.join(data, "tiny_llama_missing.gguf"), None, small,
               drop="blk.1.ffn_up.weight")
    tiny_llama(os.path.join(data, "tiny_llama_badshape.gguf"), None, small,
               bad_shape="blk.1.attn_k.weight")
    for name in sorted(os.listdir(data)):
        if name.endswith(".gguf"):
            print(f"  {name}: {os.path.getsize(os.path.join(data, name))} bytes")


if __name__ == "__main__":
    main()
