#!/usr/bin/env python3
"""Golden-reference generator for hydra's C loaders / forward pass.

Everything here is computed with Hugging Face `transformers` + torch (CPU, fp32,
eager attention); none of hydra's own code is used.

Writes (under --out, normally `tests`):
  data/tiny-gpt2/            random-init GPT-2 (config.json + model.safetensors)
  data/tiny-llama/           random-init Llama (config.json + model.safetensors)
  data/tiny-llama-sharded/   the same Llama, sharded (index.json + 2-3 shards)
  data/tiny-gpt_neox/        random-init GPT-NeoX (Pythia): parallel residual,
                             partial rotary, transformers 5 rope_parameters
  data/tiny-gpt_neox-sequential/  the same family with use_parallel_residual
                             false, written with Pythia's legacy keys
                             (rotary_pct, rotary_emb_base)
  data/tiny-qwen2/           random-init Qwen2 (q/k/v biases, no o_proj bias),
                             config in the published spelling: top-level
                             rope_theta, use_sliding_window false with a
                             window smaller than the context
  data/tiny-qwen2-window/    random-init Qwen2 with use_sliding_window true: a
                             window of 5 on the layers from max_window_layers
                             (1 of 3) on, in the published spelling
  data/tiny-qwen3/           random-init Qwen3: q/k RMS norms per head,
                             head_dim given (16, not hidden/heads = 12),
                             attention_bias
  data/tiny-mistral/         random-init Mistral: head_dim given (16), a
                             sliding_window as long as the context
  data/tiny-mistral-window/  the same shape with sliding_window 5 on every
                             layer (Mistral 7B v0.1's kind of window)
  data/tiny-olmo2/           random-init OLMo-2: post norms and no pre norms,
                             q/k norms over the whole projections, biases
  data/tiny-gemma/           random-init Gemma: GeGLU, sqrt(d) embedding scale,
                             (1 + w) norms, tied, biases, legacy hidden_act
  data/tiny-gemma2/          random-init Gemma 2: pre and post norms, soft-caps
                             that bite, window 4 on alternate layers,
                             query_pre_attn_scalar
  data/tiny-gemma3/          random-init Gemma 3 (text): q/k norms, local and
                             global rotary (linear scaling), window 5
  data/tiny-gemma3-mm/       random-init multimodal Gemma 3 (model_type gemma3):
                             tiny-gemma3's kind of language model under
                             text_config with its defaults left out, a tiny
                             vision tower; -renamed: its tensors under the
                             model's own names (model.language_model.*)
  data/tiny-phi3/            random-init Phi-3: fused qkv and gate_up, partial
                             rotary 0.75, window 6 on every layer
  data/tiny-llama-longrope/  random-init Llama with longrope scaling
  data/tiny-phi3-longrope/   random-init Phi-3 with longrope (short factors
                             1-3 per pair, attention factor from a context 4x
                             the pretraining one), Phi-3.5's config spelling
  data/tiny-phi3-defaults/   random-init Phi-3 whose config.json leaves out
                             rms_norm_eps (Phi3Config's default, 1e-5)
  data/tiny-phi/             random-init Phi (Phi-2): one LayerNorm for the
                             parallel attention and MLP, partial rotary,
                             biases, an lm_head bias
  data/tiny-phi-qknorm/      tiny-phi's block with qk_layernorm: one LayerNorm
                             (weight, bias) over head_dim for all heads of q,
                             one for k; GQA
  data/tiny-granite/         random-init Granite: every multiplier away from 1,
                             tied
  data/tiny-gpt_neo/         random-init GPT-Neo: global, local (window 5),
                             global; unscaled scores; tied
  data/tiny-stablelm/        random-init StableLM: LayerNorm, SwiGLU, partial
                             rotary 0.25, q/k/v biases (and -parallel: one
                             shared norm, a parallel residual)
  data/tiny-stablelm-qknorm/ StableLM with qk_layernorm: a LayerNorm without
                             bias per head of q and of k (StableLM 2 12B)
  data/tiny-opt/             random-init OPT: positions offset by 2, ReLU,
                             biases, tied
  data/tiny-opt-350m/        random-init OPT as OPT-350m: norms after the
                             residual adds, no final norm, a 32-wide embedding
                             projected to and from the 48-wide stream
  data/tiny-gptj/            random-init GPT-J: adjacent-pair rotary on 8 of
                             12 dims, parallel, an lm_head bias
  golden/<name>.json         prompts, recorded positions, argmax, metadata
  golden/<name>.f32          raw little-endian float32 logits
for <name> in tiny-gpt2, tiny-llama, tiny-llama-sharded (same logits file as
tiny-llama), the newer families' tiny models (TINY_FAMILIES), and smollm2-135m
(only when --smollm2 is given). --only NAME... makes just those models (the
committed goldens of the others stay byte for byte).

Usage:
  python tests/golden/make_golden.py \
      --smollm2 /work/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf --out tests

Deterministic: fixed seeds everywhere, single-process CPU torch.
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Olmo2Config,
    Olmo2ForCausalLM,
    GemmaConfig,
    GemmaForCausalLM,
    Gemma2Config,
    Gemma2ForCausalLM,
    Gemma3TextConfig,
    Gemma3ForCausalLM,
    Phi3Config,
    Phi3ForCausalLM,
    PhiConfig,
    PhiForCausalLM,
    GraniteConfig,
    GraniteForCausalLM,
    GPTNeoConfig,
    GPTNeoForCausalLM,
    StableLmConfig,
    StableLmForCausalLM,
    OPTConfig,
    OPTForCausalLM,
    GPTJConfig,
    GPTJForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
)

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = f"transformers {transformers.__version__}, torch {torch.__version__}"

# ---------------------------------------------------------------------------
# Tiny-model settings
# ---------------------------------------------------------------------------
TINY_VOCAB = 1000
TINY_PROMPT_LENS = (1, 7, 23)
# initializer_range chosen so that the logits have a std of a few units and
# attention is far from uniform (the transformers default 0.02 gives ~0.1).
GPT2_INIT_RANGE = 0.25
LLAMA_INIT_RANGE = 0.25
# The newer families' tiny models: a smaller vocabulary and width keep each
# model's files at a few hundred KB.
FAMILY_VOCAB = 512
NORM_WEIGHT_NOISE = 0.25   # norm weight = init (1.0) + N(0, this)
NORM_BIAS_NOISE = 0.25     # LayerNorm bias = N(0, this)
LINEAR_BIAS_NOISE = 0.3    # every linear/Conv1D bias = N(0, this)

SMOLLM2_PROMPTS = [
    "The",
    "The quick brown fox jumps over the",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
    "<|im_start|>assistant\nThe capital of France is",
]


def log(msg):
    print(msg, flush=True)


def rel(path):
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fresh_dir(path):
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def save_model(model, path, **kw):
    """save_pretrained, keeping only config.json + safetensors files."""
    fresh_dir(path)
    # transformers 5 always writes safetensors (the safe_serialization
    # argument is gone); older versions need it spelled out.
    if int(transformers.__version__.split(".")[0]) < 5:
        kw["safe_serialization"] = True
    model.save_pretrained(path, **kw)
    for name in os.listdir(path):
        if name == "config.json" or name.endswith(".safetensors") or name.endswith(".safetensors.index.json"):
            continue
        os.remove(os.path.join(path, name))  # generation_config.json etc.
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        log(f"  wrote {rel(p)} ({os.path.getsize(p)} bytes)")


def legacy_rope_config(cfg_path):
    """transformers 5 writes rope settings as "rope_parameters": {"rope_theta": ..}.
    Most published checkpoints (written by transformers 4.x) have a top-level
    "rope_theta" instead.  Rewrite this config.json in that older form so the C
    loader is tested on both spellings (transformers reads both; the logits
    check below proves they mean the same model)."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["rope_scaling"] = None
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} with legacy top-level rope_theta")


def perturb(model, seed, norm_types):
    """Give every norm weight/bias and every linear bias non-trivial values."""
    gen = torch.Generator().manual_seed(seed)
    n_norm = n_bias = 0
    with torch.no_grad():
        for mname, mod in model.named_modules():
            is_norm = isinstance(mod, norm_types)
            for pname, p in mod.named_parameters(recurse=False):
                noise = lambda std: torch.randn(p.shape, generator=gen, dtype=p.dtype) * std
                if is_norm and pname == "weight":
                    p.add_(noise(NORM_WEIGHT_NOISE))
                    n_norm += 1
                elif is_norm and pname == "bias":
                    p.add_(noise(NORM_BIAS_NOISE))
                    n_norm += 1
                elif pname == "bias":
                    p.add_(noise(LINEAR_BIAS_NOISE))
                    n_bias += 1
    log(f"  perturbed {n_norm} norm tensors, {n_bias} linear biases")


def run_prompts(model, prompts, positions):
    """Each prompt alone: batch 1, no padding, fp32. Returns list of [P, V] arrays."""
    out = []
    with torch.no_grad():
        for ids, pos in zip(prompts, positions):
            x = torch.tensor([ids], dtype=torch.long)
            logits = model(input_ids=x, use_cache=False).logits[0]  # [T, V]
            assert logits.dtype == torch.float32
            out.append(logits[pos].numpy().astype("<f4", copy=True))
    return out


def write_golden(golden_dir, name, model_field, vocab, prompts, positions, logits, logits_file=None, texts=None):
    logits_file = logits_file or f"{name}.f32"
    fpath = os.path.join(golden_dir, logits_file)
    if logits is not None:
        with open(fpath, "wb") as f:
            for arr in logits:
                assert arr.shape == (len(arr), vocab) and arr.dtype == np.dtype("<f4")
                f.write(arr.tobytes(order="C"))
        log(f"  wrote {rel(fpath)} ({os.path.getsize(fpath)} bytes, sha256 {sha256(fpath)[:16]})")
    # argmax per recorded position; also report the smallest top1-top2 gap
    # (argmax checks are only meaningful where the gap is not tiny).
    recs = []
    min_gap = float("inf")
    with open(fpath, "rb") as f:
        data = np.frombuffer(f.read(), dtype="<f4")
    off = 0
    for i, (ids, pos) in enumerate(zip(prompts, positions)):
        arr = data[off: off + len(pos) * vocab].reshape(len(pos), vocab)
        off += len(pos) * vocab
        top2 = np.sort(arr, axis=1)[:, -2:]
        min_gap = min(min_gap, float((top2[:, 1] - top2[:, 0]).min()))
        rec = {"ids": [int(t) for t in ids], "positions": [int(p) for p in pos],
               "argmax": [int(a) for a in arr.argmax(axis=1)]}
        if texts is not None:
            rec["text"] = texts[i]
        recs.append(rec)
    assert off == data.size, "logits file size mismatch"
    lines = ["{",
             f'  "model": {json.dumps(model_field)},',
             f'  "vocab": {vocab},',
             f'  "source": {json.dumps(SOURCE)},',
             '  "prompts": [']
    lines += ["    " + json.dumps(r) + ("," if i + 1 < len(recs) else "") for i, r in enumerate(recs)]
    lines += ["  ],", f'  "logits_file": {json.dumps(logits_file)}', "}"]
    jpath = os.path.join(golden_dir, f"{name}.json")
    with open(jpath, "w") as f:
        f.write("\n".join(lines) + "\n")
    log(f"  wrote {rel(jpath)} ({os.path.getsize(jpath)} bytes); "
        f"{sum(len(p) for p in positions)} rows x {vocab}; min top1-top2 gap {min_gap:.4g}")


def logit_stats(logits):
    a = np.concatenate(logits)
    return f"logits std {a.std():.3f}, min {a.min():.2f}, max {a.max():.2f}"


def tiny_prompts(seed, vocab):
    rng = np.random.default_rng(seed)
    prompts = [rng.integers(0, vocab, size=n).tolist() for n in TINY_PROMPT_LENS]
    positions = [list(range(n)) for n in TINY_PROMPT_LENS]
    return prompts, positions


def load_eager(path):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    m.eval()
    assert m.config._attn_implementation == "eager"
    return m


# ---------------------------------------------------------------------------
def make_tiny_gpt2(data_dir, golden_dir):
    name = "tiny-gpt2"
    log(f"[{name}]")
    cfg = GPT2Config(n_layer=3, n_embd=64, n_head=4, vocab_size=TINY_VOCAB, n_positions=128,
                     activation_function="gelu_new", initializer_range=GPT2_INIT_RANGE)
    torch.manual_seed(1234)
    model = GPT2LMHeadModel(cfg).float().eval()
    perturb(model, 1235, (torch.nn.LayerNorm,))
    path = os.path.join(data_dir, name)
    save_model(model, path)
    model = load_eager(path)  # goldens come from what is on disk
    prompts, positions = tiny_prompts(2001, TINY_VOCAB)
    logits = run_prompts(model, prompts, positions)
    log(f"  {logit_stats(logits)}")
    write_golden(golden_dir, name, rel(path), TINY_VOCAB, prompts, positions, logits)


def make_tiny_llama(data_dir, golden_dir):
    name = "tiny-llama"
    log(f"[{name}]")
    cfg = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=TINY_VOCAB, max_position_embeddings=128,
                      rope_theta=5000.0, rms_norm_eps=1e-5, tie_word_embeddings=False,
                      initializer_range=LLAMA_INIT_RANGE)
    torch.manual_seed(1234)
    model = LlamaForCausalLM(cfg).float().eval()
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    perturb(model, 1235, (LlamaRMSNorm,))
    path = os.path.join(data_dir, name)
    spath = os.path.join(data_dir, name + "-sharded")
    save_model(model, path)
    log(f"[{name}-sharded]")
    save_model(model, spath, max_shard_size="450KB")
    nshards = sum(1 for f in os.listdir(spath) if f.endswith(".safetensors"))
    assert 2 <= nshards <= 3, f"expected 2-3 shards, got {nshards}"
    legacy_rope_config(os.path.join(spath, "config.json"))

    model = load_eager(path)
    c = model.config
    rt = getattr(c, "rope_parameters", None) or {"rope_theta": getattr(c, "rope_theta", None)}
    assert abs(rt["rope_theta"] - 5000.0) < 1e-6, rt
    prompts, positions = tiny_prompts(2002, TINY_VOCAB)
    logits = run_prompts(model, prompts, positions)
    log(f"  {logit_stats(logits)}")
    # the sharded copy must give bit-identical logits
    msharded = load_eager(spath)
    rts = msharded.config.rope_parameters
    assert rts["rope_theta"] == 5000.0 and rts.get("rope_type", "default") == "default", rts
    logits_s = run_prompts(msharded, prompts, positions)
    # Not always bit-exact: for a 1-token prompt torch's matrix-vector kernels
    # can sum in a different order depending on how the loaded weights are
    # aligned in memory, giving last-bit (~5e-7) differences.
    maxdiff = max(float(np.abs(a - b).max()) for a, b in zip(logits, logits_s))
    assert maxdiff <= 1e-5, f"sharded logits differ by {maxdiff}"
    log(f"  sharded copy ({nshards} shards) reproduces the logits (max abs diff {maxdiff:.3g})")
    write_golden(golden_dir, name, rel(path), TINY_VOCAB, prompts, positions, logits)
    write_golden(golden_dir, name + "-sharded", rel(spath), TINY_VOCAB, prompts, positions, None,
                 logits_file=f"{name}.f32")


def legacy_neox_rope_config(cfg_path):
    """Pythia's published config.json (transformers 4) spells the rotary as
    top-level "rotary_pct" and "rotary_emb_base"; rewrite in that form."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    cfg["rotary_emb_base"] = rp["rope_theta"]
    cfg["rotary_pct"] = rp["partial_rotary_factor"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} with Pythia's rotary_pct and rotary_emb_base")


def make_family_model(data_dir, golden_dir, name, model, norm_types, seed, rewrite=None):
    """Perturb, save, reload from disk (optionally after rewriting its
    config.json in another spelling) and write the logits golden."""
    perturb(model, seed + 1, norm_types)
    path = os.path.join(data_dir, name)
    save_model(model, path)
    if rewrite:
        rewrite(os.path.join(path, "config.json"))
    ref = model
    model = load_eager(path)
    vocab = model.config.get_text_config().vocab_size
    prompts, positions = tiny_prompts(seed + 2, vocab)
    logits = run_prompts(model, prompts, positions)
    if rewrite:  # the rewritten config must mean the same model
        before = run_prompts(ref.eval(), prompts, positions)
        maxdiff = max(float(np.abs(a - b).max()) for a, b in zip(logits, before))
        scale = max(float(np.abs(a).max()) for a in logits)
        assert maxdiff <= 2e-6 * scale, f"{name}: rewritten config changes the logits by {maxdiff} (scale {scale})"
    log(f"  {logit_stats(logits)}")
    write_golden(golden_dir, name, rel(path), vocab, prompts, positions, logits)
    return model


def make_tiny_gpt_neox(data_dir, golden_dir, parallel):
    name = "tiny-gpt_neox" + ("" if parallel else "-sequential")
    log(f"[{name}]")
    cfg = GPTNeoXConfig(hidden_size=48, intermediate_size=128, num_hidden_layers=3,
                        num_attention_heads=4, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                        rope_parameters={"rope_type": "default", "rope_theta": 5000.0,
                                         "partial_rotary_factor": 0.5},
                        use_parallel_residual=parallel, hidden_act="gelu", layer_norm_eps=1e-5,
                        tie_word_embeddings=False, initializer_range=GPT2_INIT_RANGE)
    torch.manual_seed(4100 + parallel)
    model = GPTNeoXForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 4110 + parallel,
                          None if parallel else legacy_neox_rope_config)
    c = m.config
    assert c.use_parallel_residual == parallel and c.rope_parameters["partial_rotary_factor"] == 0.5
    assert m.gpt_neox.layers[0].attention.rotary_ndims == 6


def published_qwen2_config(cfg_path):
    """Qwen2/2.5's published config.json (transformers 4): top-level rope_theta,
    no layer_types, and a sliding_window that is off (use_sliding_window
    false) although smaller than the context and with max_window_layers
    below num_hidden_layers: the loader must see that nothing slides."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    cfg.pop("layer_types")
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["rope_scaling"] = None
    cfg["use_sliding_window"] = False
    cfg["sliding_window"] = 16
    cfg["max_window_layers"] = 1
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} in Qwen2's published spelling (sliding window off)")


def make_tiny_qwen2(data_dir, golden_dir):
    name = "tiny-qwen2"
    log(f"[{name}]")
    cfg = Qwen2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                      rope_parameters={"rope_type": "default", "rope_theta": 20000.0}, rms_norm_eps=1e-6,
                      tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE)
    torch.manual_seed(4200)
    model = Qwen2ForCausalLM(cfg).float().eval()
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Qwen2RMSNorm,), 4210,
                          published_qwen2_config)
    a = m.model.layers[0].self_attn
    assert a.q_proj.bias is not None and a.o_proj.bias is None
    assert all(l.self_attn.sliding_window is None for l in m.model.layers)


def published_qwen2_window_config(cfg_path):
    """Qwen2's published spelling (top-level rope_theta, no layer_types) with
    the window on: transformers derives the sliding layers from
    max_window_layers, and so must the loader."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp.get("rope_type", "default") == "default", rp
    assert cfg.pop("layer_types") == ["full_attention"] + ["sliding_attention"] * 2
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["rope_scaling"] = None
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} in Qwen2's published spelling (no layer_types)")


def make_tiny_qwen2_window(data_dir, golden_dir):
    """Qwen2 with use_sliding_window true: a window of 5 keys on the layers
    from max_window_layers = 1 on (layers 1 and 2 of 3 slide, layer 0 attends
    over every key), short enough to bite on the 7- and 23-token prompts."""
    name = "tiny-qwen2-window"
    log(f"[{name}]")
    cfg = Qwen2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                      rope_parameters={"rope_type": "default", "rope_theta": 20000.0}, rms_norm_eps=1e-6,
                      use_sliding_window=True, sliding_window=5, max_window_layers=1,
                      tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE)
    cfg._attn_implementation = "eager"  # the reference run of the rewritten config's check too
    torch.manual_seed(4250)
    model = Qwen2ForCausalLM(cfg).float().eval()
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Qwen2RMSNorm,), 4260,
                          published_qwen2_window_config)
    assert [l.self_attn.sliding_window for l in m.model.layers] == [None, 5, 5]
    # the window bites: the same weights with every layer full give other logits
    full = Qwen2Config(**{**m.config.to_dict(), "use_sliding_window": False, "layer_types": None})
    ref = Qwen2ForCausalLM(full).float().eval()
    ref.load_state_dict(m.state_dict())
    ref.config._attn_implementation = "eager"
    prompts, positions = tiny_prompts(4262, FAMILY_VOCAB)
    a, b = run_prompts(m, prompts, positions), run_prompts(ref, prompts, positions)
    gap = float(np.abs(a[-1][-1] - b[-1][-1]).max())
    assert float(np.abs(a[0] - b[0]).max()) <= 1e-5 and gap > 0.1, gap
    log(f"  without the window the last logits move by up to {gap:.3g}")


def make_tiny_llama_rope(data_dir, golden_dir, name, rope, shape):
    """A Llama whose rope_parameters scale the frequencies (Llama 3.1's
    llama3, linear, yarn); every regime of the scaling falls on some
    dimension of these head sizes."""
    log(f"[{name}]")
    cfg = LlamaConfig(**{"vocab_size": FAMILY_VOCAB, **shape}, rms_norm_eps=1e-5,
                      rope_parameters=rope, tie_word_embeddings=False,
                      initializer_range=LLAMA_INIT_RANGE)
    torch.manual_seed(4300 + len(name))
    model = LlamaForCausalLM(cfg).float().eval()
    from transformers.models.llama.modeling_llama import LlamaRMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (LlamaRMSNorm,), 4310 + len(name))
    rot = m.model.rotary_emb
    assert m.config.rope_parameters["rope_type"] == rope["rope_type"], m.config.rope_parameters
    log(f"  inv_freq {rot.inv_freq.tolist()}, attention scaling {rot.attention_scaling}")


LLAMA_SMALL = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, vocab_size=256)


def make_tiny_qwen3(data_dir, golden_dir):
    name = "tiny-qwen3"
    log(f"[{name}]")
    cfg = Qwen3Config(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, head_dim=16, vocab_size=FAMILY_VOCAB,
                      max_position_embeddings=128,
                      rope_parameters={"rope_type": "default", "rope_theta": 30000.0}, rms_norm_eps=1e-6,
                      attention_bias=True, tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE)
    torch.manual_seed(4400)
    model = Qwen3ForCausalLM(cfg).float().eval()
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Qwen3RMSNorm,), 4410)
    a = m.model.layers[0].self_attn
    assert a.head_dim == 16 and tuple(a.q_norm.weight.shape) == (16,), a.head_dim
    assert a.q_proj.bias is not None and a.o_proj.bias is not None
    assert float((a.q_norm.weight.detach() - 1).abs().max()) > 0.1  # the per-head norms are not the identity
    assert all(l.self_attn.sliding_window is None for l in m.model.layers)


def make_tiny_mistral(data_dir, golden_dir, window=None):
    """window None: as long as the context (no effect); else every layer
    attends over its own key and the window - 1 before it, as Mistral 7B
    v0.1's 4096 does, short enough to bite on the golden's prompts."""
    name = "tiny-mistral" + ("" if window is None else "-window")
    log(f"[{name}]")
    cfg = MistralConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=2, head_dim=16, vocab_size=FAMILY_VOCAB,
                        max_position_embeddings=128, sliding_window=window or 128,
                        rope_parameters={"rope_type": "default", "rope_theta": 15000.0}, rms_norm_eps=1e-5,
                        tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE)
    torch.manual_seed(4500 if window is None else 4520)
    model = MistralForCausalLM(cfg).float().eval()
    from transformers.models.mistral.modeling_mistral import MistralRMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (MistralRMSNorm,),
                          4510 if window is None else 4530)
    a = m.model.layers[0].self_attn
    assert a.head_dim == 16 and m.config.sliding_window == (window or 128), (a.head_dim, m.config.sliding_window)
    if window is not None:  # the window changes the logits of the golden's longer prompts
        prompts, positions = tiny_prompts(4532, m.config.vocab_size)
        unwindowed = load_eager(os.path.join(data_dir, name))
        unwindowed.config.sliding_window = None
        for layer in unwindowed.model.layers:
            layer.self_attn.sliding_window = None
        full = run_prompts(unwindowed, prompts, positions)
        windowed = run_prompts(m, prompts, positions)
        diff = max(float(np.abs(a - b).max()) for a, b in zip(full, windowed))
        assert diff > 1e-3, f"{name}: the window of {window} does not change the logits ({diff})"
        log(f"  the window changes the logits by up to {diff:.3g}")


def make_tiny_olmo2(data_dir, golden_dir):
    name = "tiny-olmo2"
    log(f"[{name}]")
    cfg = Olmo2Config(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                      rope_parameters={"rope_type": "default", "rope_theta": 25000.0}, rms_norm_eps=1e-6,
                      attention_bias=True, tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE,
                      pad_token_id=None, eos_token_id=None)
    torch.manual_seed(4600)
    model = Olmo2ForCausalLM(cfg).float().eval()
    from transformers.models.olmo2.modeling_olmo2 import Olmo2RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Olmo2RMSNorm,), 4610)
    l = m.model.layers[0]
    assert not hasattr(l, "input_layernorm") and tuple(l.self_attn.q_norm.weight.shape) == (48,)
    assert tuple(l.self_attn.k_norm.weight.shape) == (24,) and l.self_attn.o_proj.bias is not None


def legacy_gemma_config(cfg_path):
    """Gemma 1's published config.json says hidden_act "gelu", which
    GemmaConfig reads as the tanh approximation; rewrite it so."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    assert cfg["hidden_act"] == "gelu_pytorch_tanh", cfg["hidden_act"]
    cfg["hidden_act"] = "gelu"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} with Gemma 1's legacy hidden_act \"gelu\"")


GEMMA_SHAPE = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, vocab_size=FAMILY_VOCAB,
                   max_position_embeddings=128, initializer_range=LLAMA_INIT_RANGE,
                   pad_token_id=None, eos_token_id=None, bos_token_id=None)


def make_tiny_gemma(data_dir, golden_dir):
    name = "tiny-gemma"
    log(f"[{name}]")
    cfg = GemmaConfig(**GEMMA_SHAPE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                      rms_norm_eps=1e-6, attention_bias=True)
    torch.manual_seed(4700)
    model = GemmaForCausalLM(cfg).float().eval()
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (GemmaRMSNorm,), 4710, legacy_gemma_config)
    assert m.config.tie_word_embeddings and m.config.hidden_act == "gelu_pytorch_tanh"
    assert m.model.layers[0].self_attn.head_dim == 16 and m.model.layers[0].self_attn.o_proj.bias is not None


def make_tiny_gemma2(data_dir, golden_dir):
    """Soft-caps that bite (3 on the attention scores, 4 on the logits), a
    window of 4 on layers 0 and 2, query_pre_attn_scalar 24 (not head_dim)."""
    name = "tiny-gemma2"
    log(f"[{name}]")
    cfg = Gemma2Config(**GEMMA_SHAPE, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                       rms_norm_eps=1e-6, query_pre_attn_scalar=24, sliding_window=4,
                       attn_logit_softcapping=3.0, final_logit_softcapping=4.0)
    torch.manual_seed(4800)
    model = Gemma2ForCausalLM(cfg).float().eval()
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Gemma2RMSNorm,), 4810)
    assert m.config.layer_types == ["sliding_attention", "full_attention", "sliding_attention"]
    # the caps bite: the pre-cap logits reach past the cap
    with torch.no_grad():
        h = m.model(input_ids=torch.tensor([list(range(23))])).last_hidden_state
        raw = m.lm_head(h)
    log(f"  pre-cap logits max |x| {float(raw.abs().max()):.2f} (cap 4)")
    assert float(raw.abs().max()) > 6.0


def make_tiny_gemma3(data_dir, golden_dir):
    """Layers 0, 1 sliding (window 5, local theta 100), layer 2 full (theta
    10000, linear scaling 2); per-head q/k norms; no soft-caps."""
    name = "tiny-gemma3"
    log(f"[{name}]")
    cfg = Gemma3TextConfig(**GEMMA_SHAPE, rms_norm_eps=1e-6, query_pre_attn_scalar=20, sliding_window=5,
                           layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                           rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                                            "full_attention": {"rope_type": "linear", "factor": 2.0,
                                                               "rope_theta": 10000.0}})
    torch.manual_seed(4900)
    model = Gemma3ForCausalLM(cfg).float().eval()
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Gemma3RMSNorm,), 4910)
    assert m.config.model_type == "gemma3_text" and m.config.final_logit_softcapping is None
    a = m.model.layers[0].self_attn
    assert tuple(a.q_norm.weight.shape) == (16,) and float(a.q_norm.weight.detach().abs().max()) > 0.1


def published_gemma3_mm_config(cfg_path):
    """Leave out of text_config the keys a published multimodal Gemma 3
    config.json leaves to Gemma3TextConfig's defaults (the heads, the
    context, the special ids), as google/gemma-3-4b-it's does."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    text = cfg["text_config"]
    for key, default in (("num_attention_heads", 8), ("num_key_value_heads", 4),
                         ("max_position_embeddings", 131072), ("bos_token_id", 2), ("eos_token_id", 1)):
        assert text[key] == default, (key, text[key])
        del text[key]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} with text_config's defaults left out")


def make_tiny_gemma3_mm(data_dir, golden_dir):
    """Gemma 3's multimodal model (model_type gemma3, as Gemma 3 4B and up):
    the language model of tiny-gemma3's kind under text_config, 8 query and 4
    key/value heads (Gemma3TextConfig's defaults, left out of the file), a
    one-layer vision tower hydra ignores; logits of text-only prompts. Its
    tensors are named as the published files name them
    (language_model.model.*, what save_pretrained writes); also written under
    the model's own names (model.language_model.*: tiny-gemma3-mm-renamed,
    the same logits)."""
    from safetensors.torch import load_file, save_file
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, SiglipVisionConfig
    name = "tiny-gemma3-mm"
    log(f"[{name}]")
    text = dict(GEMMA_SHAPE, num_attention_heads=8, num_key_value_heads=4, max_position_embeddings=131072,
                bos_token_id=2, eos_token_id=1, rms_norm_eps=1e-6, query_pre_attn_scalar=20,
                sliding_window=5, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
                rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                                 "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}})
    vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                                image_size=28, patch_size=14)
    cfg = Gemma3Config(text_config=text, vision_config=vision.to_dict(), mm_tokens_per_image=1,
                       image_token_index=FAMILY_VOCAB - 1, boi_token_index=FAMILY_VOCAB - 2,
                       eoi_token_index=FAMILY_VOCAB - 3)
    torch.manual_seed(4950)
    model = Gemma3ForConditionalGeneration(cfg).float().eval()
    from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Gemma3RMSNorm,), 4960, published_gemma3_mm_config)
    assert m.config.model_type == "gemma3" and m.config.text_config.num_attention_heads == 8
    path = os.path.join(data_dir, name)
    tensors = load_file(os.path.join(path, "model.safetensors"))
    assert "language_model.model.embed_tokens.weight" in tensors, sorted(tensors)[:5]
    assert any(k.startswith("vision_tower.") for k in tensors)
    renamed = {}
    for k, v in tensors.items():
        for old, new in (("language_model.model.", "model.language_model."), ("vision_tower.", "model.vision_tower."),
                         ("multi_modal_projector.", "model.multi_modal_projector."),
                         ("language_model.lm_head.", "lm_head.")):
            if k.startswith(old):
                k = new + k[len(old):]
                break
        renamed[k] = v.contiguous()
    lpath = path + "-renamed"
    fresh_dir(lpath)
    shutil.copy(os.path.join(path, "config.json"), os.path.join(lpath, "config.json"))
    save_file(renamed, os.path.join(lpath, "model.safetensors"), metadata={"format": "pt"})
    log(f"  wrote {rel(lpath)} (the tensors as Gemma3ForConditionalGeneration's own names)")
    prompts, positions = tiny_prompts(4960 + 2, FAMILY_VOCAB)
    again, before = run_prompts(load_eager(lpath), prompts, positions), run_prompts(m, prompts, positions)
    assert all(np.array_equal(a, b) for a, b in zip(again, before)), "the renamed copy's logits differ"
    golden = json.load(open(os.path.join(golden_dir, name + ".json")))
    golden["model"] = rel(lpath)
    golden["logits_file"] = name + ".f32"
    with open(os.path.join(golden_dir, name + "-renamed.json"), "w") as f:
        json.dump(golden, f, indent=2)
        f.write("\n")


def make_tiny_phi3(data_dir, golden_dir):
    """Fused qkv_proj and gate_up_proj, partial rotary 0.75 (12 of 16, as
    Phi-4-mini), a window of 6 on every layer."""
    name = "tiny-phi3"
    log(f"[{name}]")
    cfg = Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                     original_max_position_embeddings=128, sliding_window=6,
                     rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                      "partial_rotary_factor": 0.75},
                     rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE,
                     pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5000)
    model = Phi3ForCausalLM(cfg).float().eval()
    from transformers.models.phi3.modeling_phi3 import Phi3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Phi3RMSNorm,), 5010)
    assert m.model.rotary_emb.inv_freq.numel() == 6 and m.config.sliding_window == 6


def drop_rms_norm_eps(cfg_path):
    """A config.json without rms_norm_eps: the reader must take Phi3Config's
    default (1e-5), not another family's."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    assert cfg.pop("rms_norm_eps") == 1e-5
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} without rms_norm_eps")


def make_tiny_phi3_defaults(data_dir, golden_dir):
    """Phi-3 with rms_norm_eps left to Phi3Config's default of 1e-5 (the key
    dropped from config.json); embeddings scaled down so that the first
    norms' inputs are small and the epsilon shows in the logits."""
    name = "tiny-phi3-defaults"
    log(f"[{name}]")
    cfg = Phi3Config(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                     vocab_size=FAMILY_VOCAB, max_position_embeddings=128, tie_word_embeddings=False,
                     initializer_range=LLAMA_INIT_RANGE, pad_token_id=None, eos_token_id=None,
                     bos_token_id=None)
    assert cfg.rms_norm_eps == 1e-5
    torch.manual_seed(5050)
    model = Phi3ForCausalLM(cfg).float().eval()
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(0.02)
    from transformers.models.phi3.modeling_phi3 import Phi3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Phi3RMSNorm,), 5060, drop_rms_norm_eps)
    assert m.config.rms_norm_eps == 1e-5


def published_phi3_longrope_config(cfg_path):
    """Phi-3.5-mini's / Phi-4-mini's config.json spelling (transformers 4):
    rope_scaling {"type": "longrope", long_factor, short_factor}, rope_theta,
    partial_rotary_factor and original_max_position_embeddings at the top."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    rp = cfg.pop("rope_parameters")
    assert rp["rope_type"] == "longrope", rp
    cfg["rope_scaling"] = {"type": "longrope", "long_factor": rp["long_factor"], "short_factor": rp["short_factor"]}
    cfg["rope_theta"] = rp["rope_theta"]
    cfg["partial_rotary_factor"] = rp["partial_rotary_factor"]
    cfg["original_max_position_embeddings"] = rp["original_max_position_embeddings"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"  rewrote {rel(cfg_path)} in Phi-3.5's rope_scaling spelling")


def make_tiny_phi3_longrope(data_dir, golden_dir):
    """Phi-3's longrope (Phi-3-128k, Phi-3.5, Phi-4-mini): per-pair short
    factors between 1 and 3 (long ones up to 20, unused within the
    pretraining context of 64), context 256 (attention factor
    sqrt(1 + ln 4 / ln 64)), partial rotary 0.75, no window."""
    name = "tiny-phi3-longrope"
    log(f"[{name}]")
    gen = np.random.default_rng(5020)
    short = [round(float(x), 4) for x in gen.uniform(1.0, 3.0, 6)]
    long = [round(float(x), 4) for x in gen.uniform(1.0, 20.0, 6)]
    cfg = Phi3Config(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=256,
                     original_max_position_embeddings=64, sliding_window=None,
                     rope_parameters={"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
                                      "short_factor": short, "long_factor": long},
                     rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE,
                     pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5030)
    model = Phi3ForCausalLM(cfg).float().eval()
    from transformers.models.phi3.modeling_phi3 import Phi3RMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (Phi3RMSNorm,), 5040, published_phi3_longrope_config)
    rot = m.model.rotary_emb
    assert rot.rope_type == "longrope" and abs(rot.attention_scaling - math.sqrt(1 + math.log(4) / math.log(64))) < 1e-6
    assert torch.allclose(rot.inv_freq, 1.0 / (torch.tensor(short) * 10000.0 ** (torch.arange(0, 12, 2).float() / 12)))


def make_tiny_phi(data_dir, golden_dir):
    """Phi-2's block: one LayerNorm read by attention and MLP side by side,
    partial rotary (the default 0.5), biases everywhere, an lm_head bias."""
    name = "tiny-phi"
    log(f"[{name}]")
    cfg = PhiConfig(hidden_size=48, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                    vocab_size=FAMILY_VOCAB, max_position_embeddings=128, hidden_act="gelu_new",
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "partial_rotary_factor": 0.5},
                    layer_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=GPT2_INIT_RANGE,
                    pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5100)
    model = PhiForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5110)
    assert m.lm_head.bias is not None and float(m.lm_head.bias.detach().abs().max()) > 0.1
    assert m.model.layers[0].self_attn.rotary_ndims == 6


def make_tiny_phi_qknorm(data_dir, golden_dir):
    """Phi with qk_layernorm: one LayerNorm (weight and bias) over head_dim
    for every head of q, one for k, before the partial rotary; GQA (2 kv
    heads of 4)."""
    name = "tiny-phi-qknorm"
    log(f"[{name}]")
    cfg = PhiConfig(hidden_size=48, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                    hidden_act="gelu_new", qk_layernorm=True,
                    rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                     "partial_rotary_factor": 0.5},
                    layer_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=GPT2_INIT_RANGE,
                    pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5120)
    model = PhiForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5130)
    a = m.model.layers[0].self_attn
    assert a.qk_layernorm and tuple(a.q_layernorm.weight.shape) == (12,)
    assert float((a.k_layernorm.weight.detach() - 1).abs().max()) > 0.1
    assert float(a.q_layernorm.bias.detach().abs().max()) > 0.1


def make_tiny_granite(data_dir, golden_dir):
    """Every multiplier away from 1: embeddings x3, scores x0.3 (not
    1/sqrt(12)), sublayer outputs x0.6, logits / 2.5; tied."""
    name = "tiny-granite"
    log(f"[{name}]")
    cfg = GraniteConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                        num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, rms_norm_eps=1e-6,
                        embedding_multiplier=3.0, attention_multiplier=0.3, residual_multiplier=0.6,
                        logits_scaling=2.5, tie_word_embeddings=True, attention_bias=True,
                        initializer_range=LLAMA_INIT_RANGE, pad_token_id=None, eos_token_id=None,
                        bos_token_id=None)
    torch.manual_seed(5200)
    model = GraniteForCausalLM(cfg).float().eval()
    from transformers.models.granite.modeling_granite import GraniteRMSNorm
    m = make_family_model(data_dir, golden_dir, name, model, (GraniteRMSNorm,), 5210)
    assert m.config.logits_scaling == 2.5 and m.config.tie_word_embeddings


def make_tiny_gpt_neo(data_dir, golden_dir):
    """Global layers 0 and 2, a local layer 1 with a window of 5; scores not
    scaled (GPT-Neo's); tied."""
    name = "tiny-gpt_neo"
    log(f"[{name}]")
    cfg = GPTNeoConfig(hidden_size=48, num_layers=3, num_heads=4, intermediate_size=128,
                       vocab_size=FAMILY_VOCAB, max_position_embeddings=128, window_size=5,
                       attention_types=[[["global", "local"], 1], [["global"], 1]],
                       activation_function="gelu_new", layer_norm_epsilon=1e-5,
                       initializer_range=0.1, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(5300)
    model = GPTNeoForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5310)
    assert m.config.attention_layers == ["global", "local", "global"]


def make_tiny_stablelm(data_dir, golden_dir, parallel):
    """LayerNorm with biases, SwiGLU, partial rotary (the default 0.25: 4 of
    16), q/k/v biases; sequential, or parallel with one shared norm."""
    name = "tiny-stablelm" + ("-parallel" if parallel else "")
    log(f"[{name}]")
    cfg = StableLmConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "partial_rotary_factor": 0.25},
                         layer_norm_eps=1e-5, use_qkv_bias=True, use_parallel_residual=parallel,
                         tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE,
                         pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5400 + parallel)
    model = StableLmForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5410 + parallel)
    assert m.model.layers[0].self_attn.rotary_ndims == 4
    assert (m.model.layers[0].post_attention_layernorm is None) == parallel


def make_tiny_stablelm_qknorm(data_dir, golden_dir):
    """StableLM 2 12B's q/k norms: a LayerNorm without bias per head (each
    head its own weight) over head_dim, before the partial rotary; GQA."""
    name = "tiny-stablelm-qknorm"
    log(f"[{name}]")
    cfg = StableLmConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=FAMILY_VOCAB, max_position_embeddings=128,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                          "partial_rotary_factor": 0.25},
                         layer_norm_eps=1e-5, use_qkv_bias=True, qk_layernorm=True,
                         tie_word_embeddings=False, initializer_range=LLAMA_INIT_RANGE,
                         pad_token_id=None, eos_token_id=None, bos_token_id=None)
    torch.manual_seed(5420)
    model = StableLmForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5430)
    a = m.model.layers[0].self_attn
    assert len(a.q_layernorm.norms) == 4 and len(a.k_layernorm.norms) == 2
    assert all(n.bias is None for n in a.q_layernorm.norms)
    w0, w1 = a.q_layernorm.norms[0].weight.detach(), a.q_layernorm.norms[1].weight.detach()
    assert float((w0 - w1).abs().max()) > 0.1  # every head its own weight


def make_tiny_opt(data_dir, golden_dir):
    """OPT's pre-norm block (as every size but 350m): learned positions offset
    by 2, a ReLU MLP, biases everywhere, tied."""
    name = "tiny-opt"
    log(f"[{name}]")
    cfg = OPTConfig(hidden_size=48, num_hidden_layers=3, ffn_dim=128, num_attention_heads=4,
                    vocab_size=FAMILY_VOCAB, max_position_embeddings=128, word_embed_proj_dim=48,
                    activation_function="relu", do_layer_norm_before=True, init_std=0.15,
                    pad_token_id=1, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(5500)
    model = OPTForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5510)
    assert m.config.tie_word_embeddings and m.model.decoder.embed_positions.weight.shape[0] == 130


def make_tiny_opt_350m(data_dir, golden_dir):
    """OPT-350m's block: LayerNorms after each residual add
    (do_layer_norm_before false) and no final norm; a 32-wide embedding
    (word_embed_proj_dim) projected up to the 48-wide stream by project_in and
    back down by project_out before the tied unembedding."""
    name = "tiny-opt-350m"
    log(f"[{name}]")
    cfg = OPTConfig(hidden_size=48, num_hidden_layers=3, ffn_dim=128, num_attention_heads=4,
                    vocab_size=FAMILY_VOCAB, max_position_embeddings=128, word_embed_proj_dim=32,
                    activation_function="relu", do_layer_norm_before=False, init_std=0.15,
                    pad_token_id=1, bos_token_id=None, eos_token_id=None)
    torch.manual_seed(5520)
    model = OPTForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5530)
    dec = m.model.decoder
    assert dec.final_layer_norm is None and not dec.layers[0].do_layer_norm_before
    assert tuple(dec.project_in.weight.shape) == (48, 32) and tuple(dec.project_out.weight.shape) == (32, 48)
    assert m.config.tie_word_embeddings and tuple(m.lm_head.weight.shape) == (FAMILY_VOCAB, 32)


def make_tiny_gptj(data_dir, golden_dir):
    """GPT-J: adjacent-pair rotary on 8 of 12 dims, one ln_1 for the
    parallel attention and MLP, an lm_head bias."""
    name = "tiny-gptj"
    log(f"[{name}]")
    cfg = GPTJConfig(n_embd=48, n_layer=3, n_head=4, rotary_dim=8, n_inner=128, vocab_size=FAMILY_VOCAB,
                     n_positions=128, activation_function="gelu_new", layer_norm_epsilon=1e-5,
                     tie_word_embeddings=False, initializer_range=GPT2_INIT_RANGE,
                     bos_token_id=None, eos_token_id=None)
    torch.manual_seed(5600)
    model = GPTJForCausalLM(cfg).float().eval()
    m = make_family_model(data_dir, golden_dir, name, model, (torch.nn.LayerNorm,), 5610)
    assert m.lm_head.bias is not None and m.transformer.h[0].attn.rotary_dim == 8


# name -> maker(data_dir, golden_dir)
TINY_FAMILIES = {
    "tiny-gpt_neox": lambda d, g: make_tiny_gpt_neox(d, g, True),
    "tiny-gpt_neox-sequential": lambda d, g: make_tiny_gpt_neox(d, g, False),
    "tiny-qwen2": make_tiny_qwen2,
    "tiny-qwen2-window": make_tiny_qwen2_window,
    "tiny-qwen3": make_tiny_qwen3,
    "tiny-mistral": make_tiny_mistral,
    "tiny-mistral-window": lambda d, g: make_tiny_mistral(d, g, 5),
    "tiny-olmo2": make_tiny_olmo2,
    "tiny-gemma": make_tiny_gemma,
    "tiny-gemma2": make_tiny_gemma2,
    "tiny-gemma3": make_tiny_gemma3,
    "tiny-gemma3-mm": make_tiny_gemma3_mm,
    "tiny-phi3": make_tiny_phi3,
    "tiny-phi3-longrope": make_tiny_phi3_longrope,
    "tiny-phi3-defaults": make_tiny_phi3_defaults,
    "tiny-phi": make_tiny_phi,
    "tiny-phi-qknorm": make_tiny_phi_qknorm,
    "tiny-granite": make_tiny_granite,
    "tiny-gpt_neo": make_tiny_gpt_neo,
    "tiny-stablelm": lambda d, g: make_tiny_stablelm(d, g, False),
    "tiny-stablelm-parallel": lambda d, g: make_tiny_stablelm(d, g, True),
    "tiny-stablelm-qknorm": make_tiny_stablelm_qknorm,
    "tiny-opt": make_tiny_opt,
    "tiny-opt-350m": make_tiny_opt_350m,
    "tiny-gptj": make_tiny_gptj,
    # llama3: original context 64, wavelengths 6.3 (kept), 33 (smoothed), 168... (divided)
    "tiny-llama3": lambda d, g: make_tiny_llama_rope(
        d, g, "tiny-llama3",
        {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
         "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        dict(hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=128)),
    # longrope: short factors 1.3..2.9 per pair, pretraining context 64 in a context of 256
    # (attention factor sqrt(1 + ln 4 / ln 64)); the long factors are never used within 64
    "tiny-llama-longrope": lambda d, g: make_tiny_llama_rope(
        d, g, "tiny-llama-longrope",
        {"rope_type": "longrope", "rope_theta": 10000.0, "short_factor": [1.3, 2.9, 1.7, 2.2],
         "long_factor": [4.0, 9.5, 16.0, 31.0], "original_max_position_embeddings": 64},
        dict(LLAMA_SMALL, max_position_embeddings=256)),
    "tiny-llama-linear": lambda d, g: make_tiny_llama_rope(
        d, g, "tiny-llama-linear", {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
        dict(LLAMA_SMALL, max_position_embeddings=128)),
    # yarn: ramp over pairs 0..3 of 4 (theta 100, original context 64), attention factor 1 + 0.1 ln 4
    "tiny-llama-yarn": lambda d, g: make_tiny_llama_rope(
        d, g, "tiny-llama-yarn",
        {"rope_type": "yarn", "rope_theta": 100.0, "factor": 4.0, "original_max_position_embeddings": 64},
        dict(LLAMA_SMALL, max_position_embeddings=256)),
}


def describe_gguf(path):
    from collections import Counter
    from gguf import GGUFReader
    r = GGUFReader(path)
    counts = Counter(t.tensor_type.name for t in r.tensors)
    log(f"  GGUF tensors: {len(r.tensors)}; types: "
        + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
    by_type = {}
    for t in r.tensors:
        kind = t.name.split(".")[-2] if t.name.startswith("blk.") else t.name
        by_type.setdefault(t.tensor_type.name, set()).add(kind)
    for k, v in sorted(by_type.items()):
        log(f"    {k}: {', '.join(sorted(v))}")


def make_smollm2(gguf_path, golden_dir):
    name = "smollm2-135m"
    log(f"[{name}] {gguf_path}")
    describe_gguf(gguf_path)
    d, f = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    c = model.config
    assert c._attn_implementation == "eager"
    rp = getattr(c, "rope_parameters", None) or {"rope_theta": getattr(c, "rope_theta", None)}
    log(f"  config: layers={c.num_hidden_layers} hidden={c.hidden_size} ffn={c.intermediate_size} "
        f"heads={c.num_attention_heads} kv_heads={c.num_key_value_heads} head_dim={c.head_dim} "
        f"rope={rp} rms_eps={c.rms_norm_eps} tie_word_embeddings={c.tie_word_embeddings} "
        f"vocab={c.vocab_size} act={c.hidden_act}")
    vocab = c.vocab_size
    prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in SMOLLM2_PROMPTS]
    # middle and last position (just position 0 for a 1-token prompt)
    positions = [sorted({(len(p) - 1) // 2, len(p) - 1}) for p in prompts]
    for s, p in zip(SMOLLM2_PROMPTS, prompts):
        log(f"  prompt {len(p):2d} tokens: {s!r}")
    logits = run_prompts(model, prompts, positions)
    log(f"  {logit_stats(logits)}")
    for s, p, pos, lg in zip(SMOLLM2_PROMPTS, prompts, positions, logits):
        log(f"  next token after {s[-24:]!r}: {tok.decode([int(lg[-1].argmax())])!r}")
    write_golden(golden_dir, name, "$SMOLLM2", vocab, prompts, positions, logits, texts=SMOLLM2_PROMPTS)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests", help="output root (gets data/ and golden/)")
    ap.add_argument("--smollm2", help="path to SmolLM2-135M-Instruct.Q4_1.gguf (skipped if absent)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--only", nargs="+", metavar="NAME",
                    help="make only these tiny models (e.g. tiny-gpt_neox); the others' files are left alone")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    log(f"source: {SOURCE}, numpy {np.__version__}, python {sys.version.split()[0]}")

    data_dir = os.path.join(args.out, "data")
    golden_dir = os.path.join(args.out, "golden")
    os.makedirs(data_dir, exist_ok=True)
    os.makedirs(golden_dir, exist_ok=True)

    makers = {"tiny-gpt2": make_tiny_gpt2, "tiny-llama": make_tiny_llama, **TINY_FAMILIES}
    if args.only:
        unknown = [n for n in args.only if n not in makers]
        if unknown:
            raise SystemExit(f"--only: unknown {unknown} (known: {', '.join(makers)})")
        for n in args.only:
            makers[n](data_dir, golden_dir)
        log("done")
        return
    for maker in makers.values():
        maker(data_dir, golden_dir)
    if args.smollm2:
        make_smollm2(args.smollm2, golden_dir)
    else:
        log("[smollm2-135m] skipped (no --smollm2)")
    log("done")


if __name__ == "__main__":
    main()
