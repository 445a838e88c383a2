#!/usr/bin/env python3
"""Per-architecture GGUF goldens: a tiny random transformers model of each
family, converted to GGUF the way llama.cpp's convert_hf_to_gguf.py converts
it (gguf-py's writer and tensor-name map, its metadata keys, its q/k
permutation for llama, its qkv de-interleaving for gptneox, its transposes for
gpt2, rope_freqs.weight for Llama 3 scaling; matrices F16, norms and biases
F32, as `--outtype f16`), and the logits of that file from `transformers`.

  tests/data/gguf/arch-<name>.gguf   the converted file (40-130 KB each)
  tests/golden/gguf-<name>.json/.f32 its logits at every position of three
                                     prompts (1, 7, 23 random ids); format:
                                     tests/golden/README.md
  tests/data/gguf/refused/*.gguf     small files with one thing wrong (REFUSED),
                                     which test_gguf_archs expects refused
  tests/fuzz/corpus/gguf/{llama,gptneox}.gguf   small valid files, fuzz seeds

Where transformers reads the architecture from GGUF (llama, qwen2, qwen3,
gpt2, gemma2, gemma3, phi3, stablelm), the logits are transformers' own
forward of the GGUF file, loaded with `gguf_file=`, and the script checks that
they equal those of the model it was made from (weights rounded to fp16 as the
file holds them) within 1e-5. Where it does not (gptneox, gemma, olmo2, phi2,
granite; llama with rope_freqs.weight, rope.scaling or attention biases, qwen2
with rope.scaling, which transformers' GGUF loader ignores), the logits come
from the transformers model the file was made from, its weights rounded to
fp16 as the file holds them. Nothing of hydra is used. The converters per
architecture follow llama.cpp's convert_hf_to_gguf.py: Gemma's norm weights
stored as 1 + w, no rope base written for gemma, gemma2, stablelm and phi2
(llama.cpp's 10000 holds), phi2's feed_forward_length as 4 x hidden, granite's
q/k rows permuted as llama's.

usage: python tests/golden/make_gguf_arch_golden.py [ROOT] [--only NAME... | --refused-only]
(needs: torch transformers gguf numpy; CPU, eager attention, 1 thread)
"""
import argparse
import json
import math
import os
import sys
import tempfile

import gguf
import numpy as np
import torch
import transformers
from gguf import GGMLQuantizationType as T
from transformers import (AutoModelForCausalLM, Gemma2Config, Gemma2ForCausalLM, Gemma3ForCausalLM,
                          Gemma3TextConfig, GemmaConfig, GemmaForCausalLM, GPT2Config,
                          GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, GraniteConfig,
                          GraniteForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, Olmo2Config, Olmo2ForCausalLM, Phi3Config,
                          Phi3ForCausalLM, PhiConfig, PhiForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM, StableLmConfig,
                          StableLmForCausalLM)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_golden import perturb  # noqa: E402  (the tiny models' norm and bias noise)

VOCAB = 128
PROMPT_LENS = (1, 7, 23)
INIT_RANGE = 0.25
SOURCE = f"transformers {transformers.__version__}, torch {torch.__version__}, gguf-py " \
         f"{gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'}"


# ---- the converter: convert_hf_to_gguf.py's choices, per architecture ------------------------

def llama_permute(w, n_head, n_head_kv):
    """LlamaModel.permute: rotate_half rows -> ggml's adjacent-pair rows."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(
        w.shape)


def neox_qkv(w, n_head, n_embd):
    """GPTNeoXModel.modify_tensors: per-head [q k v] interleaving -> q | k | v."""
    if w.ndim == 2:
        w = w.reshape(n_head, 3, n_embd // n_head, n_embd)
        return np.concatenate([w[:, i].reshape(-1, n_embd) for i in range(3)])
    w = w.reshape(n_head, 3, n_embd // n_head)
    return np.concatenate([w[:, i].reshape(-1) for i in range(3)])


def llama3_rope_factors(rope, head_dim):
    """LlamaModel.generate_extra_tensors: rope_freqs.weight for rope_type llama3."""
    base = rope.get("rope_theta", 10000.0)
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor, low, high = rope.get("factor", 8.0), rope.get("low_freq_factor", 1.0), \
        rope.get("high_freq_factor", 4.0)
    old_context = rope.get("original_max_position_embeddings", 8192)
    low_wavelen, high_wavelen = old_context / low, old_context / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_context / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_tokenizer(w, vocab):
    """A minimal gpt2-model vocabulary: transformers' GGUF loader reads the
    vocabulary size from it where the architecture has no vocab_size key."""
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(vocab)])
    w.add_token_types([1] * vocab)
    w.add_token_merges(["t 1"])


def common_keys(w, hp):
    """TextModel.set_gguf_parameters."""
    w.add_block_count(hp["num_hidden_layers"])
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    if hp.get("num_key_value_heads") is not None:
        w.add_head_count_kv(hp["num_key_value_heads"])
    rope = hp.get("rope_parameters") or {}
    rope_type = rope.get("rope_type")
    if rope_type == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(rope["factor"])
    elif rope_type == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(rope["factor"])
        w.add_rope_scaling_orig_ctx_len(rope["original_max_position_embeddings"])
        if rope.get("extrapolation_factor") is not None:
            w.add_rope_scaling_yarn_ext_factor(rope["extrapolation_factor"])
        if rope.get("attention_factor", rope.get("attn_factor")) is not None:
            w.add_rope_scaling_yarn_attn_factor(rope.get("attention_factor", rope.get("attn_factor")))
        if rope.get("beta_fast") is not None:
            w.add_rope_scaling_yarn_beta_fast(rope["beta_fast"])
        if rope.get("beta_slow") is not None:
            w.add_rope_scaling_yarn_beta_slow(rope["beta_slow"])
    elif rope_type not in (None, "default", "llama3"):
        raise ValueError(f"this script does not convert rope_type {rope_type}")
    if rope.get("rope_theta") is not None:
        w.add_rope_freq_base(rope["rope_theta"])
    if hp.get("rms_norm_eps") is not None:
        w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    if hp.get("head_dim") is not None:
        w.add_key_length(hp["head_dim"])
        w.add_value_length(hp["head_dim"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def shape_keys(w, hp):
    """The keys every converter below writes (each calls them by its own names)."""
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(hp["hidden_size"])
    w.add_block_count(hp["num_hidden_layers"])
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_head_count(hp["num_attention_heads"])
    w.add_head_count_kv(hp.get("num_key_value_heads") or hp["num_attention_heads"])


def gemma_keys(w, hp, arch):
    """GemmaModel / Gemma2Model / Gemma3Model.set_gguf_parameters: no rope
    base for gemma and gemma2 (llama.cpp's default, 10000, holds)."""
    shape_keys(w, hp)
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    w.add_key_length(hp["head_dim"])
    w.add_value_length(hp["head_dim"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if arch == gguf.MODEL_ARCH.GEMMA2:
        w.add_attn_logit_softcapping(hp["attn_logit_softcapping"])
        w.add_final_logit_softcapping(hp["final_logit_softcapping"])
        w.add_sliding_window(hp["sliding_window"])
    if arch == gguf.MODEL_ARCH.GEMMA3:
        rope = hp["rope_parameters"]
        w.add_rope_freq_base(rope.get("full_attention", rope).get("rope_theta", 1_000_000.0))
        if rope.get("sliding_attention", {}).get("rope_theta") is not None:  # TextModel's
            w.add_rope_freq_base_swa(rope["sliding_attention"]["rope_theta"])
        if hp.get("final_logit_softcapping"):
            w.add_final_logit_softcapping(hp["final_logit_softcapping"])
        if hp.get("sliding_window_pattern") != 1:
            w.add_sliding_window(hp["sliding_window"])


def phi3_keys(w, hp):
    """Phi3MiniModel.set_gguf_parameters (no rope_scaling: no rope factors)."""
    rope = hp["rope_parameters"]
    n_embd, n_head = hp["hidden_size"], hp["num_attention_heads"]
    w.add_context_length(hp["max_position_embeddings"])
    w.add_rope_scaling_orig_ctx_len(hp.get("original_max_position_embeddings")
                                    or hp["max_position_embeddings"])
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(hp["intermediate_size"])
    w.add_block_count(hp["num_hidden_layers"])
    w.add_head_count(n_head)
    w.add_head_count_kv(hp["num_key_value_heads"])
    w.add_layer_norm_rms_eps(hp["rms_norm_eps"])
    w.add_rope_dimension_count(int(rope.get("partial_rotary_factor", 1.0) * n_embd) // n_head)
    w.add_rope_freq_base(rope["rope_theta"])
    if rope.get("rope_type") == "longrope":  # the attention factor beside the factor tensors
        orig = hp.get("original_max_position_embeddings") or hp["max_position_embeddings"]
        scale = hp["max_position_embeddings"] / orig
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_sliding_window(hp.get("sliding_window") or 0)


def phi2_keys(w, hp):
    """Phi2Model.set_gguf_parameters: feed_forward_length is 4 x hidden."""
    n_embd, n_head = hp["hidden_size"], hp["num_attention_heads"]
    w.add_context_length(hp["max_position_embeddings"])
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(4 * n_embd)
    w.add_block_count(hp["num_hidden_layers"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head)
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_rope_dimension_count(int(hp["rope_parameters"]["partial_rotary_factor"] * n_embd) // n_head)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def stablelm_keys(w, hp):
    """StableLMModel.set_gguf_parameters: no rope base (10000 holds)."""
    shape_keys(w, hp)
    rotary = hp["rope_parameters"]["partial_rotary_factor"]
    w.add_rope_dimension_count(int(rotary * (hp["hidden_size"] // hp["num_attention_heads"])))
    w.add_parallel_residual(hp.get("use_parallel_residual", True))
    w.add_layer_norm_eps(hp["layer_norm_eps"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)


def granite_keys(w, hp):
    """GraniteModel.set_gguf_parameters, after LlamaModel's."""
    if hp.get("attention_multiplier"):
        w.add_attention_scale(hp["attention_multiplier"])
    if hp.get("embedding_multiplier"):
        w.add_embedding_scale(hp["embedding_multiplier"])
    if hp.get("residual_multiplier"):
        w.add_residual_scale(hp["residual_multiplier"])
    if hp.get("logits_scaling"):
        w.add_logit_scale(hp["logits_scaling"])


GEMMAS = (gguf.MODEL_ARCH.GEMMA, gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3)
PERMUTED = (gguf.MODEL_ARCH.LLAMA, gguf.MODEL_ARCH.GRANITE)


def convert(model, arch, path, name, tweak=None):
    """Writes model (a transformers model) as llama.cpp's converter would;
    tweak(writer), when given, changes the file just before it is written."""
    hp = model.config.to_dict()
    n_layers = model.config.num_hidden_layers
    w = gguf.GGUFWriter(path, arch=gguf.MODEL_ARCH_NAMES[arch])
    w.add_name(name)
    tmap = gguf.get_tensor_name_map(arch, n_layers)
    if arch == gguf.MODEL_ARCH.GPTNEOX:  # GPTNeoXModel.set_gguf_parameters
        w.add_context_length(hp["max_position_embeddings"])
        w.add_embedding_length(hp["hidden_size"])
        w.add_block_count(n_layers)
        w.add_feed_forward_length(hp["intermediate_size"])
        rotary_pct = hp["rope_parameters"]["partial_rotary_factor"]
        w.add_rope_dimension_count(
            int(rotary_pct * (hp["hidden_size"] // hp["num_attention_heads"])))
        w.add_head_count(hp["num_attention_heads"])
        w.add_parallel_residual(hp.get("use_parallel_residual", True))
        w.add_layer_norm_eps(hp["layer_norm_eps"])
    elif arch == gguf.MODEL_ARCH.GPT2:  # GPT2Model.set_gguf_parameters
        w.add_block_count(n_layers)
        w.add_context_length(hp["n_ctx"] if "n_ctx" in hp else hp["n_positions"])
        w.add_embedding_length(hp["n_embd"])
        w.add_feed_forward_length(4 * hp["n_embd"])
        w.add_head_count(hp["n_head"])
        w.add_layer_norm_eps(hp["layer_norm_epsilon"])
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    elif arch in GEMMAS:
        gemma_keys(w, hp, arch)
    elif arch == gguf.MODEL_ARCH.PHI3:
        phi3_keys(w, hp)
    elif arch == gguf.MODEL_ARCH.PHI2:
        phi2_keys(w, hp)
    elif arch == gguf.MODEL_ARCH.STABLELM:
        stablelm_keys(w, hp)
    else:
        common_keys(w, hp)
    if arch in PERMUTED:  # LlamaModel.set_gguf_parameters
        w.add_vocab_size(hp["vocab_size"])
        head_dim = hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"]
        w.add_rope_dimension_count(head_dim)
    if arch == gguf.MODEL_ARCH.GRANITE:
        granite_keys(w, hp)
    write_tokenizer(w, model.config.vocab_size)
    if arch == gguf.MODEL_ARCH.PHI3:  # as a real vocabulary's pad id (SpecialVocab): without
        w.add_pad_token_id(model.config.vocab_size - 1)  # it Phi3Config's 32000 is out of range

    n_head = hp.get("num_attention_heads", hp.get("n_head"))
    n_kv = hp.get("num_key_value_heads") or n_head
    for hf_name, tensor in model.state_dict().items():
        if hf_name.endswith((".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")):
            continue
        if hf_name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue  # save_pretrained leaves a tied head out: the converter never sees it
        data = tensor.detach().float().numpy()
        if arch in GEMMAS and hf_name.endswith("norm.weight"):
            data = data + 1  # Gemma's (1 + w) RMSNorm, stored as llama.cpp computes it
        if arch in PERMUTED:
            if hf_name.endswith(("q_proj.weight", "q_proj.bias")):
                data = llama_permute(data, n_head, n_head)
            if hf_name.endswith(("k_proj.weight", "k_proj.bias")):
                data = llama_permute(data, n_head, n_kv)
        if arch == gguf.MODEL_ARCH.GPTNEOX and "query_key_value" in hf_name:
            data = neox_qkv(data, n_head, hp["hidden_size"])
        if arch == gguf.MODEL_ARCH.GPT2:
            if hf_name.endswith((".c_attn.weight", ".c_proj.weight", ".c_fc.weight")):
                data = data.T
            hf_name = hf_name[len("transformer."):]
        gguf_name = tmap.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"cannot map {hf_name}")
        data = np.ascontiguousarray(data)
        if data.ndim <= 1 or gguf_name.endswith("_norm.weight"):
            w.add_tensor(gguf_name, data.astype(np.float32))
        else:
            w.add_tensor(gguf_name, data.astype(np.float16))
    rope = hp.get("rope_parameters") or {}
    if arch == gguf.MODEL_ARCH.LLAMA and rope.get("rope_type") == "llama3":
        head_dim = hp.get("head_dim") or hp["hidden_size"] // hp["num_attention_heads"]
        w.add_tensor(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight",
                     llama3_rope_factors(rope, head_dim))
    if arch == gguf.MODEL_ARCH.PHI3 and rope.get("rope_type") == "longrope":  # Phi3MiniModel's rope factors
        for kind in ("long", "short"):
            w.add_tensor(gguf.TENSOR_NAMES[getattr(gguf.MODEL_TENSOR, f"ROPE_FACTORS_{kind.upper()}")] + ".weight",
                         np.array(rope[f"{kind}_factor"], dtype=np.float32))
    if tweak:
        tweak(w)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---- the tiny models ---------------------------------------------------------------------------

LLAMA_SHAPE = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                   tie_word_embeddings=False, initializer_range=INIT_RANGE)
LLAMA_SHAPE_PAIRS = 4  # head size 8: rotary pairs per head


GEMMA_SHAPE = dict(vocab_size=VOCAB, hidden_size=16, intermediate_size=64, num_hidden_layers=3,
                   num_attention_heads=2, num_key_value_heads=1, head_dim=256,
                   max_position_embeddings=64, rms_norm_eps=1e-6, initializer_range=INIT_RANGE,
                   pad_token_id=None)


def rms_norms():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm
    from transformers.models.mistral.modeling_mistral import MistralRMSNorm
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    from transformers.models.phi3.modeling_phi3 import Phi3RMSNorm
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm
    from transformers.models.granite.modeling_granite import GraniteRMSNorm
    return (LlamaRMSNorm, Qwen2RMSNorm, Qwen3RMSNorm, MistralRMSNorm, GemmaRMSNorm, Gemma2RMSNorm,
            Gemma3RMSNorm, Phi3RMSNorm, Olmo2RMSNorm, GraniteRMSNorm)


# name: (architecture, model class, config, golden source, seed). "gguf": transformers
# loading the GGUF; "hf": the transformers model it was made from.
MODELS = {
    "llama": (gguf.MODEL_ARCH.LLAMA, LlamaForCausalLM, lambda: LlamaConfig(
        **LLAMA_SHAPE, rms_norm_eps=1e-5, rope_parameters={"rope_type": "default",
                                                            "rope_theta": 20000.0}), "gguf", 5100),
    # llama.cpp converts Mistral as llama (no sliding window key): a llama file
    # whose heads are not hidden / heads wide (key_length).
    "mistral": (gguf.MODEL_ARCH.LLAMA, MistralForCausalLM, lambda: MistralConfig(
        **LLAMA_SHAPE, head_dim=16, rms_norm_eps=1e-5, sliding_window=None,
        rope_parameters={"rope_type": "default", "rope_theta": 15000.0}), "gguf", 5150),
    "llama3": (gguf.MODEL_ARCH.LLAMA, LlamaForCausalLM, lambda: LlamaConfig(
        **{**LLAMA_SHAPE, "hidden_size": 48, "max_position_embeddings": 128}, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                         "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 64}), "hf", 5200),
    "llama-linear": (gguf.MODEL_ARCH.LLAMA, LlamaForCausalLM, lambda: LlamaConfig(
        **LLAMA_SHAPE, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0}),
        "hf", 5250),
    # attention_bias (q, k, v, o; q and k biases permuted with their rows) and
    # tied embeddings (no output.weight). transformers' GGUF loader builds a
    # llama without biases.
    "llama-bias-tied": (gguf.MODEL_ARCH.LLAMA, LlamaForCausalLM, lambda: LlamaConfig(
        **{**LLAMA_SHAPE, "tie_word_embeddings": True}, attention_bias=True, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "hf", 5280),
    "qwen2": (gguf.MODEL_ARCH.QWEN2, Qwen2ForCausalLM, lambda: Qwen2Config(
        **LLAMA_SHAPE, rms_norm_eps=1e-6, rope_parameters={"rope_type": "default",
                                                            "rope_theta": 30000.0}), "gguf", 5300),
    # YaRN (Qwen2.5's long-context recipe): factor 4 over an original context
    # of 32 = 128 / 4; theta 100 so that the ramp spans the 4 pairs.
    "qwen2-yarn": (gguf.MODEL_ARCH.QWEN2, Qwen2ForCausalLM, lambda: Qwen2Config(
        **{**LLAMA_SHAPE, "max_position_embeddings": 128}, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "yarn", "rope_theta": 100.0, "factor": 4.0,
                         "original_max_position_embeddings": 32}), "hf", 5350),
    # transformers' GGUF loader reads no head_dim for qwen3: Qwen3Config's
    # default, 128, is the only one it loads right.
    "qwen3": (gguf.MODEL_ARCH.QWEN3, Qwen3ForCausalLM, lambda: Qwen3Config(
        **{**LLAMA_SHAPE, "num_attention_heads": 2, "num_key_value_heads": 1}, head_dim=128,
        rms_norm_eps=1e-6, rope_parameters={"rope_type": "default", "rope_theta": 40000.0}),
        "gguf", 5410),
    "gptneox": (gguf.MODEL_ARCH.GPTNEOX, GPTNeoXForCausalLM, lambda: GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5},
        use_parallel_residual=True, tie_word_embeddings=False, initializer_range=INIT_RANGE),
        "hf", 5500),
    "gptneox-sequential": (gguf.MODEL_ARCH.GPTNEOX, GPTNeoXForCausalLM, lambda: GPTNeoXConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.25},
        use_parallel_residual=False, tie_word_embeddings=False, initializer_range=INIT_RANGE),
        "hf", 5600),
    # transformers' GGUF loader takes Gemma2Config's defaults for what the file
    # does not say to it: query_pre_attn_scalar 256 (llama.cpp: the head size,
    # so 256 here), soft-caps 50 and 30 (what the file says), rope_theta 10000
    # (the converter writes none). Layers 0 and 2 slide over 4 keys.
    "gemma2": (gguf.MODEL_ARCH.GEMMA2, Gemma2ForCausalLM, lambda: Gemma2Config(
        **GEMMA_SHAPE, sliding_window=4, attn_logit_softcapping=50.0,
        final_logit_softcapping=30.0, rope_parameters={"rope_type": "default",
                                                       "rope_theta": 10000.0}), "gguf", 5800),
    # llama.cpp's 27B rule: at 46 layers gemma2 scores are scaled by
    # (embedding_length / head_count)^-1/2 = 4^-1/2, not head size^-1/2 (the
    # 27B's query_pre_attn_scalar); transformers' GGUF loader would take 256
    "gemma2-46-layers": (gguf.MODEL_ARCH.GEMMA2, Gemma2ForCausalLM, lambda: Gemma2Config(
        **{**GEMMA_SHAPE, "hidden_size": 8, "intermediate_size": 8, "num_hidden_layers": 46,
           "head_dim": 8}, query_pre_attn_scalar=4, sliding_window=4,
        attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "hf", 5850),
    # five sliding layers, then a full one (layer 5), a window of 4; global base
    # 50000, local 10000 (llama.cpp's fixed local base); no soft-caps.
    "gemma3": (gguf.MODEL_ARCH.GEMMA3, Gemma3ForCausalLM, lambda: Gemma3TextConfig(
        **{**GEMMA_SHAPE, "num_hidden_layers": 6}, sliding_window=4,
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                         "full_attention": {"rope_type": "default", "rope_theta": 50000.0}}),
        "gguf", 5900),
    # fused attn_qkv and ffn_up (gate rows, then up rows); no window (llama.cpp
    # and transformers' GGUF loader both ignore Phi-3's)
    "phi3": (gguf.MODEL_ARCH.PHI3, Phi3ForCausalLM, lambda: Phi3Config(
        **LLAMA_SHAPE, rms_norm_eps=1e-5, sliding_window=None, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 20000.0}), "gguf", 6000),
    # longrope as Phi-3.5 has it: short and long factor tensors, the attention factor of a
    # context 4x the pretraining one; transformers' GGUF loader reads no rope factors: the
    # golden is the model's own (within the pretraining context: the short factors)
    "phi3-longrope": (gguf.MODEL_ARCH.PHI3, Phi3ForCausalLM, lambda: Phi3Config(
        **{**LLAMA_SHAPE, "max_position_embeddings": 256}, original_max_position_embeddings=64,
        rms_norm_eps=1e-5, sliding_window=None, pad_token_id=None,
        rope_parameters={"rope_type": "longrope", "rope_theta": 20000.0,
                         "short_factor": [1.2, 2.5, 1.8, 3.1, 1.1, 2.2, 1.6, 2.9][:LLAMA_SHAPE_PAIRS],
                         "long_factor": [5.0, 9.0, 3.0, 17.0, 8.0, 4.0, 12.0, 30.0][:LLAMA_SHAPE_PAIRS]}),
     "hf", 6050),
    # transformers reads no gemma GGUF: the golden is the model's own
    "gemma": (gguf.MODEL_ARCH.GEMMA, GemmaForCausalLM, lambda: GemmaConfig(
        **{**GEMMA_SHAPE, "head_dim": 16}, hidden_act="gelu_pytorch_tanh",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "hf", 6100),
    "olmo2": (gguf.MODEL_ARCH.OLMO2, Olmo2ForCausalLM, lambda: Olmo2Config(
        **LLAMA_SHAPE, rms_norm_eps=1e-6, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 25000.0}), "hf", 6200),
    # transformers' GGUF loader takes the partial rotary (0.25) from StableLmConfig's
    # default and use_qkv_bias, use_parallel_residual from the tensors
    "stablelm": (gguf.MODEL_ARCH.STABLELM, StableLmForCausalLM, lambda: StableLmConfig(
        **{**LLAMA_SHAPE, "hidden_size": 64}, layer_norm_eps=1e-5, use_qkv_bias=True,
        use_parallel_residual=False, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.25}), "gguf", 6300),
    "stablelm-parallel": (gguf.MODEL_ARCH.STABLELM, StableLmForCausalLM, lambda: StableLmConfig(
        **{**LLAMA_SHAPE, "hidden_size": 64}, layer_norm_eps=1e-5, use_qkv_bias=False,
        use_parallel_residual=True, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.25}), "gguf", 6350),
    # separate attn_q/k/v (transformers' PhiForCausalLM names), biases
    # everywhere, output.bias; feed_forward_length is 4 x hidden as the
    # converter writes it
    "phi2": (gguf.MODEL_ARCH.PHI2, PhiForCausalLM, lambda: PhiConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu_new",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5},
        layer_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=INIT_RANGE,
        pad_token_id=None), "hf", 6400),
    # the same block with q, k, v fused in attn_qkv (TWEAKS)
    "phi2-fused": (gguf.MODEL_ARCH.PHI2, PhiForCausalLM, lambda: PhiConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, hidden_act="gelu_new",
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "partial_rotary_factor": 0.5},
        layer_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=INIT_RANGE,
        pad_token_id=None), "hf", 6450),
    # every multiplier away from 1; q/k permuted as llama's
    "granite": (gguf.MODEL_ARCH.GRANITE, GraniteForCausalLM, lambda: GraniteConfig(
        **LLAMA_SHAPE, rms_norm_eps=1e-6, embedding_multiplier=3.0, attention_multiplier=0.3,
        residual_multiplier=0.6, logits_scaling=2.5, pad_token_id=None,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}), "hf", 6500),
    "gpt2": (gguf.MODEL_ARCH.GPT2, GPT2LMHeadModel, lambda: GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=1024,
        activation_function="gelu_new", initializer_range=INIT_RANGE), "gguf", 5700),
}


def fuse_qkv(n_layers):
    """Older phi2 files (converted from Phi-2's first format, mixer.Wqkv): one
    attn_qkv per layer, the rows of q, then k, then v, as llama.cpp reads it."""
    def tweak(w):
        tensors = w.tensors[0]
        for l in range(n_layers):
            for kind in ("weight", "bias"):
                parts = [tensors.pop(f"blk.{l}.attn_{x}.{kind}").tensor for x in "qkv"]
                w.add_tensor(f"blk.{l}.attn_qkv.{kind}", np.concatenate(parts))
    return tweak


TWEAKS = {"phi2-fused": fuse_qkv(2)}


def make_model(cls, config, seed):
    torch.manual_seed(seed)
    model = cls(config).float().eval()
    perturb(model, seed + 1, rms_norms() + (torch.nn.LayerNorm,))
    with torch.no_grad():  # the file holds matrices in fp16: so does the reference
        for pname, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(p.half().float())
    return model


def run_prompts(model, prompts):
    out = []
    with torch.no_grad():
        for ids in prompts:
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]
            out.append(logits.numpy().astype("<f4"))
    return out


def write_golden(root, name, gguf_rel, prompts, logits, source):
    golden = os.path.join(root, "tests", "golden", f"gguf-{name}")
    np.concatenate(logits).astype("<f4").tofile(golden + ".f32")
    recs = [{"ids": ids, "positions": list(range(len(ids))),
             "argmax": [int(a) for a in arr.argmax(-1)]} for ids, arr in zip(prompts, logits)]
    lines = ["{", f'  "model": {json.dumps(gguf_rel)},', f'  "vocab": {VOCAB},',
             f'  "source": {json.dumps(source)},', '  "prompts": [']
    lines += ["    " + json.dumps(r) + ("," if i + 1 < len(recs) else "")
              for i, r in enumerate(recs)]
    lines += ["  ],", f'  "logits_file": "gguf-{name}.f32"', "}"]
    with open(golden + ".json", "w") as f:
        f.write("\n".join(lines) + "\n")
    gaps = [float(np.diff(np.sort(a, -1)[:, -2:], axis=-1).min()) for a in logits]
    scale = max(float(np.abs(a).max()) for a in logits)
    print(f"  {golden}.json, .f32: logit scale {scale:.3g}, min top1-top2 gap {min(gaps):.3g}")


def make(root, name):
    arch, cls, config, source, seed = MODELS[name]
    model = make_model(cls, config(), seed)
    model.config._attn_implementation = "eager"
    rng = np.random.default_rng(seed + 2)
    prompts = [[int(t) for t in rng.integers(0, VOCAB, size=n)] for n in PROMPT_LENS]
    reference = run_prompts(model, prompts)
    gguf_rel = f"tests/data/gguf/arch-{name}.gguf"
    path = os.path.join(root, gguf_rel)
    convert(model, arch, path, f"tiny-{name}", TWEAKS.get(name))
    if source == "gguf":
        loaded = AutoModelForCausalLM.from_pretrained(
            os.path.dirname(path), gguf_file=os.path.basename(path), dtype=torch.float32,
            attn_implementation="eager").eval()
        logits = run_prompts(loaded, prompts)
        worst = max(float(np.abs(a - b).max() / np.abs(b).max())
                    for a, b in zip(logits, reference))
        assert worst <= 1e-5, f"{name}: transformers' GGUF load differs from the model by {worst}"
        how = f"{SOURCE}; transformers loading the GGUF (gguf_file=), within {worst:.1g} of " \
              "the model it was converted from"
    else:
        logits = reference
        how = f"{SOURCE}; the transformers model the GGUF was converted from (fp16 weights)"
    print(f"[{name}] {path}: {os.path.getsize(path)} bytes")
    write_golden(root, name, gguf_rel, prompts, logits, how)


# ---- files the loader must refuse, naming what is wrong (test_gguf) ---------------------------

def set_key(key, value, vtype=gguf.GGUFValueType.UINT32):
    return lambda w: w.add_key_value(key, value, vtype)


def drop_key(key):
    return lambda w: w.kv_data[0].pop(key)


def drop_tensor(name):
    return lambda w: w.tensors[0].pop(name)


def add_tensor(name, values):
    return lambda w: w.add_tensor(name, np.asarray(values, dtype=np.float32))


SMALL = dict(vocab_size=16, hidden_size=16, intermediate_size=16, num_hidden_layers=1,
             num_attention_heads=2, max_position_embeddings=64, initializer_range=INIT_RANGE)
SMALL_ROPE = {"rope_type": "default", "rope_theta": 10000.0}

# file: (model, tweak); test_gguf holds the message each must give.
REFUSED = {
    "llama-rope-dims-half": ("llama", set_key("llama.rope.dimension_count", 4)),
    "llama-rope-dims-over": ("llama", set_key("llama.rope.dimension_count", 16)),
    "llama-attention-scale": ("llama", set_key("llama.attention.scale", 0.5,
                                               gguf.GGUFValueType.FLOAT32)),
    "llama-sliding-window": ("llama", set_key("llama.attention.sliding_window", 16)),
    "llama-rope-longrope": ("llama", lambda w: (
        w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE), w.add_rope_scaling_factor(4.0))),
    "llama-rope-yarn-attn-factor": ("llama", lambda w: (
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN), w.add_rope_scaling_factor(4.0),
        w.add_rope_scaling_orig_ctx_len(16), w.add_rope_scaling_yarn_attn_factor(0.8))),
    "llama-experts": ("llama", set_key("llama.expert_count", 8)),
    "llama-rope-freqs-short": ("llama", add_tensor("rope_freqs.weight", [1.0, 2.0])),
    "llama-rope-freqs-zero": ("llama", add_tensor("rope_freqs.weight", [1.0, 0.0, 1.0, 4.0])),
    "qwen2-no-k-bias": ("qwen2", drop_tensor("blk.0.attn_k.bias")),
    "qwen2-rope-freqs": ("qwen2", add_tensor("rope_freqs.weight", [1.0, 1.0, 1.0, 1.0])),
    "qwen3-rope-dims": ("qwen3", set_key("qwen3.rope.dimension_count", 6)),
    "gptneox-rope-dims-odd": ("gptneox", set_key("gptneox.rope.dimension_count", 3)),
    "gptneox-rope-dims-over": ("gptneox", set_key("gptneox.rope.dimension_count", 10)),
    "gptneox-no-parallel-key": ("gptneox", drop_key("gptneox.use_parallel_residual")),
    "gptneox-kv-heads": ("gptneox", set_key("gptneox.attention.head_count_kv", 1)),
    "gpt2-rope-key": ("gpt2", set_key("gpt2.rope.dimension_count", 8)),
    "gemma2-softcap-zero": ("gemma2", set_key("gemma2.attn_logit_softcapping", 0.0,
                                              gguf.GGUFValueType.FLOAT32)),
    "gemma3-attn-softcap": ("gemma3", set_key("gemma3.attn_logit_softcapping", 50.0,
                                              gguf.GGUFValueType.FLOAT32)),
    "gemma3-freq-base-swa": ("gemma3", set_key("gemma3.rope.freq_base_swa", 20000.0,
                                               gguf.GGUFValueType.FLOAT32)),
    "phi3-rope-factors": ("phi3", add_tensor("rope_factors_long.weight", [1.0] * 4)),
    "gemma-output": ("gemma", add_tensor("output.weight", np.ones((16, 16)))),
    "olmo2-sliding-window": ("olmo2", set_key("olmo2.attention.sliding_window", 16)),
    "stablelm-parallel-key": ("stablelm", set_key("stablelm.use_parallel_residual", True,
                                                  gguf.GGUFValueType.BOOL)),
    "phi2-no-output-bias": ("phi2", drop_tensor("output.bias")),
    "granite-logit-scale-zero": ("granite", set_key("granite.logit_scale", 0.0,
                                                    gguf.GGUFValueType.FLOAT32)),
}


def small_model(family):
    if family == "llama":
        return gguf.MODEL_ARCH.LLAMA, LlamaForCausalLM(LlamaConfig(
            **SMALL, num_key_value_heads=1, rope_parameters=SMALL_ROPE))
    if family == "qwen2":
        return gguf.MODEL_ARCH.QWEN2, Qwen2ForCausalLM(Qwen2Config(
            **SMALL, num_key_value_heads=1, rope_parameters=SMALL_ROPE))
    if family == "qwen3":
        return gguf.MODEL_ARCH.QWEN3, Qwen3ForCausalLM(Qwen3Config(
            **SMALL, num_key_value_heads=1, head_dim=8, rope_parameters=SMALL_ROPE))
    if family == "gptneox":
        return gguf.MODEL_ARCH.GPTNEOX, GPTNeoXForCausalLM(GPTNeoXConfig(
            **SMALL, rope_parameters={**SMALL_ROPE, "partial_rotary_factor": 0.5}))
    small_gemma = dict(**SMALL, num_key_value_heads=1, head_dim=8, rope_parameters=SMALL_ROPE)
    if family == "gemma":
        return gguf.MODEL_ARCH.GEMMA, GemmaForCausalLM(GemmaConfig(**small_gemma))
    if family == "gemma2":
        return gguf.MODEL_ARCH.GEMMA2, Gemma2ForCausalLM(Gemma2Config(**small_gemma))
    if family == "gemma3":
        return gguf.MODEL_ARCH.GEMMA3, Gemma3ForCausalLM(Gemma3TextConfig(
            **{**small_gemma, "rope_parameters": None}))
    if family == "phi3":
        return gguf.MODEL_ARCH.PHI3, Phi3ForCausalLM(Phi3Config(
            **SMALL, num_key_value_heads=1, rope_parameters=SMALL_ROPE, pad_token_id=None))
    if family == "phi2":
        return gguf.MODEL_ARCH.PHI2, PhiForCausalLM(PhiConfig(
            **{**SMALL, "intermediate_size": 64}, rope_parameters={
                **SMALL_ROPE, "partial_rotary_factor": 0.5}))
    if family == "stablelm":
        return gguf.MODEL_ARCH.STABLELM, StableLmForCausalLM(StableLmConfig(
            **SMALL, use_parallel_residual=False, pad_token_id=None,
            rope_parameters={**SMALL_ROPE, "partial_rotary_factor": 0.25}))
    if family == "olmo2":
        return gguf.MODEL_ARCH.OLMO2, Olmo2ForCausalLM(Olmo2Config(
            **SMALL, rope_parameters=SMALL_ROPE, pad_token_id=None))
    if family == "granite":
        return gguf.MODEL_ARCH.GRANITE, GraniteForCausalLM(GraniteConfig(
            **SMALL, rope_parameters=SMALL_ROPE, logits_scaling=2.0))
    return gguf.MODEL_ARCH.GPT2, GPT2LMHeadModel(GPT2Config(
        vocab_size=16, n_embd=16, n_layer=1, n_head=2, n_positions=64))


def make_refused(root):
    for name, (family, tweak) in REFUSED.items():
        torch.manual_seed(7)
        arch, model = small_model(family)
        path = os.path.join(root, "tests", "data", "gguf", "refused", f"{name}.gguf")
        convert(model.eval(), arch, path, name, tweak)
        print(f"  {path}: {os.path.getsize(path)} bytes")
    for family in ("llama", "gptneox"):  # valid small files: seeds for fuzz_gguf
        torch.manual_seed(7)
        arch, model = small_model(family)
        path = os.path.join(root, "tests", "fuzz", "corpus", "gguf", f"{family}.gguf")
        convert(model.eval(), arch, path, family)
        print(f"  {path}: {os.path.getsize(path)} bytes")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?",
                    default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--only", nargs="*", choices=sorted(MODELS))
    ap.add_argument("--refused-only", action="store_true",
                    help="write only the refused files and fuzz seeds")
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = os.path.relpath(args.root)
    for name in [] if args.refused_only else args.only or MODELS:
        make(root, name)
    if not args.only:
        make_refused(root)


if __name__ == "__main__":
    main()
