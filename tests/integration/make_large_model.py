#!/usr/bin/env python3
"""Writes a valid model whose fp32 weights are far larger than its file, for
test_model_memory.sh: its tensors' data are holes (a sparse file, all zero),
so it takes no disk and no time to write.

  OUT.gguf: a qwen2 GGUF (no tokenizer), every matrix Q4_0, norms and biases
            F32, laid out as gguf-py lays a file out (32-byte alignment);
  OUT/: the same shapes as a Hugging Face llama directory (config.json and
        model.safetensors, F16).

Shapes: width 2048, 16 heads of 128 (2 key/value heads), MLP 8192, 16
layers, vocabulary 32000, tied: 0.98 G parameters, 3.9 GiB in fp32, 0.54 GiB
of Q4_0 blocks. Python's standard library only (CI has no gguf-py).

usage: make_large_model.py gguf OUT.gguf | make_large_model.py hf OUT_DIR
"""
import json
import os
import struct
import sys

D, HEADS, KV_HEADS, HEAD_DIM, MLP, LAYERS, VOCAB = 2048, 16, 2, 128, 8192, 16, 32000
Q, KV = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
F32, F16, Q4_0 = 0, 1, 2
GGUF_U32, GGUF_F32, GGUF_STRING = 4, 6, 8


def gguf_tensors():
    """(name, [ne0, ne1]) in GGUF order, fastest dimension first."""
    out = [("token_embd.weight", [D, VOCAB]), ("output_norm.weight", [D])]
    for i in range(LAYERS):
        b = f"blk.{i}."
        out += [(b + "attn_norm.weight", [D]), (b + "attn_q.weight", [D, Q]), (b + "attn_q.bias", [Q]),
                (b + "attn_k.weight", [D, KV]), (b + "attn_k.bias", [KV]),
                (b + "attn_v.weight", [D, KV]), (b + "attn_v.bias", [KV]),
                (b + "attn_output.weight", [Q, D]), (b + "ffn_norm.weight", [D]),
                (b + "ffn_gate.weight", [D, MLP]), (b + "ffn_up.weight", [D, MLP]),
                (b + "ffn_down.weight", [MLP, D])]
    return out


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path):
    kv = [("general.architecture", GGUF_STRING, "qwen2"), ("qwen2.context_length", GGUF_U32, 4096),
          ("qwen2.embedding_length", GGUF_U32, D), ("qwen2.block_count", GGUF_U32, LAYERS),
          ("qwen2.feed_forward_length", GGUF_U32, MLP), ("qwen2.attention.head_count", GGUF_U32, HEADS),
          ("qwen2.attention.head_count_kv", GGUF_U32, KV_HEADS),
          ("qwen2.rope.freq_base", GGUF_F32, 1000000.0),
          ("qwen2.attention.layer_norm_rms_epsilon", GGUF_F32, 1e-6)]
    tensors = gguf_tensors()
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, value in kv:
        head += gguf_string(key) + struct.pack("<I", vtype)
        head += gguf_string(value) if vtype == GGUF_STRING else struct.pack(
            "<I" if vtype == GGUF_U32 else "<f", value)
    offset = 0
    for name, ne in tensors:
        qtype = Q4_0 if len(ne) == 2 else F32
        n = ne[0] * (ne[1] if len(ne) == 2 else 1)
        nbytes = n // 32 * 18 if qtype == Q4_0 else n * 4
        head += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(
            struct.pack("<Q", d) for d in ne) + struct.pack("<IQ", qtype, offset)
        offset += nbytes + (-nbytes) % 32
    head += b"\0" * ((-len(head)) % 32)
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + offset)


def write_hf(out):
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": D,
                   "intermediate_size": MLP, "num_hidden_layers": LAYERS,
                   "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
                   "head_dim": HEAD_DIM, "vocab_size": VOCAB, "max_position_embeddings": 4096,
                   "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "tie_word_embeddings": True,
                   "hidden_act": "silu", "torch_dtype": "float16"}, f)
    shapes = [("model.embed_tokens.weight", [VOCAB, D]), ("model.norm.weight", [D])]
    for i in range(LAYERS):
        b = f"model.layers.{i}."
        shapes += [(b + "input_layernorm.weight", [D]), (b + "post_attention_layernorm.weight", [D]),
                   (b + "self_attn.q_proj.weight", [Q, D]), (b + "self_attn.k_proj.weight", [KV, D]),
                   (b + "self_attn.v_proj.weight", [KV, D]), (b + "self_attn.o_proj.weight", [D, Q]),
                   (b + "mlp.gate_proj.weight", [MLP, D]), (b + "mlp.up_proj.weight", [MLP, D]),
                   (b + "mlp.down_proj.weight", [D, MLP])]
    header, offset = {}, 0
    for name, shape in shapes:
        n = shape[0] * (shape[1] if len(shape) == 2 else 1) * 2
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header).encode()
    text += b" " * ((-len(text)) % 8)
    with open(os.path.join(out, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("gguf", "hf"):
        sys.exit(__doc__)
    (write_gguf if sys.argv[1] == "gguf" else write_hf)(sys.argv[2])
