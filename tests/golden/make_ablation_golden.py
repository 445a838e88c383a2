#!/usr/bin/env python3
"""Golden ablation results (McGrath et al., "The Hydra Effect", arXiv 2307.15771).

Computed with Hugging Face `transformers` + plain torch forward hooks on the CPU
(fp32, eager attention, batch 1, no cache). None of hydra's code is used.

Writes golden/ablation_<name>.json (under --out, normally `tests`) for
tiny-gpt2, tiny-llama and, with --smollm2, smollm2-135m; with --only, for the
tiny models named (the newer families': tiny-gpt_neox, ...). The format is in
tests/golden/README.md ("Ablation goldens").

Everything is read at the FINAL position of each prompt; the target is the
clean run's argmax there.

  centred logit    logit - mean over the vocabulary
  components       embed   (gpt2: wte + wpe; llama: embed_tokens)
                   attn.L  (c_proj / o_proj output, bias included)
                   mlp.L   (MLP block output)
                   head.L.H   input of c_proj / o_proj, columns H*hd..(H+1)*hd
                   neuron.L.N input of mlp.c_proj / down_proj, column N
                              (gpt2: after GELU; llama: silu(gate)*up)
  inv scale        final norm's 1/scale: LayerNorm 1/sqrt(var+eps),
                   RMSNorm 1/sqrt(mean(x^2)+eps)
  DE(y)            LayerNorm: ((y - mean y) * inv_clean * gamma) . u
                   RMSNorm:   (y * inv_clean * gamma) . u
                   u = W_U[target] - mean of the rows of W_U
                   head: y = W_O[:, H-slice] @ head_out; neuron: y = W_down[:, N] * act
  ablations        one component, final position only, by a forward hook:
                   zero, scale:0.5, mean (over this golden's prompts, clean
                   values at their final positions), patch from prompt s
                   (the component's clean value at s's final position)
  all positions    tiny models only, entries with "positions": "all": zero
                   or patch the component at EVERY position of the prompt.
                   Patch aligns from the end: position t of prompt i (length
                   n_i) takes the clean value at position t - n_i + n_j of
                   prompt s (length n_j); where that is < 0 the position is
                   left alone. Still read at the final position, same target.
  resample         tiny models only, method "resample", "samples": 3,
                   "seed": 11: for prompt p and component index c (in
                   "resample_components": first appearance in the
                   ablations), sample s patches from the source hydra's
                   engine draws: r = mix(seed, p, c, s) % (n_prompts - 1),
                   source = r if r < p else r + 1 (splitmix64; as
                   tests/bench/sweep_torch.py, checked against it); every
                   field is the mean over the samples (rank too).

Usage:
  python tests/golden/make_ablation_golden.py \
      --smollm2 /work/models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf --out tests

Deterministic: fixed seeds, torch deterministic algorithms, 1 thread by default.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = f"transformers {transformers.__version__}, torch {torch.__version__}"

TINY_PROMPT_LENS = (5, 9, 12, 7)
TINY_SEEDS = {"tiny-gpt2": 3001, "tiny-llama": 3002, "tiny-gpt_neox": 3003,
              "tiny-gpt_neox-sequential": 3004, "tiny-qwen2": 3005,
              "tiny-llama3": 3006, "tiny-qwen3": 3007,
              "tiny-mistral": 3008, "tiny-olmo2": 3009, "tiny-gemma": 3010,
              "tiny-gemma2": 3011, "tiny-gemma3": 3012, "tiny-phi3": 3013,
              "tiny-phi": 3014, "tiny-granite": 3015,
              "tiny-gpt_neo": 3016, "tiny-stablelm": 3017, "tiny-stablelm-parallel": 3018,
              "tiny-opt": 3019, "tiny-gptj": 3020, "tiny-mistral-window": 3021,
              "tiny-phi3-longrope": 3022, "tiny-qwen2-window": 3023,
              "tiny-phi-qknorm": 3024, "tiny-stablelm-qknorm": 3025}
SMOLLM2_PROMPTS = [
    "The Eiffel Tower is located in the city of",
    "The capital of Japan is the city of",
    "The sport that Michael Jordan played is",
    "The Great Wall is in the country of",
]
SIG_DIGITS = 8  # significant digits kept in the JSON (fp32 has ~7.2)
M64 = (1 << 64) - 1
SWEEP_TORCH = os.path.join(REPO_ROOT, "tests", "bench", "sweep_torch.py")

# Tolerances of the self-checks (fp32 throughout).
DE_SUM_RTOL = 1e-4


def log(msg):
    print(msg, flush=True)


def rel(path):
    return os.path.relpath(os.path.abspath(path), REPO_ROOT)


def rnd(x):
    return float(f"{float(x):.{SIG_DIGITS}g}")


# ---------------------------------------------------------------------------
# Model access: one small adapter per family
# ---------------------------------------------------------------------------
class Arch:
    def __init__(self, model):
        self.model = model
        c = model.config
        self.family = c.model_type
        if self.family == "gpt2":
            t = model.transformer
            self.n_layers = c.n_layer
            self.n_heads = c.n_head
            self.d_model = c.n_embd
            self.head_dim = c.n_embd // c.n_head
            self.embed_mod = t.drop            # its output = wte(ids) + wpe(pos) (dropout is identity in eval)
            self.attn_out = [b.attn.c_proj for b in t.h]
            self.mlp_out = [b.mlp for b in t.h]
            self.down = [b.mlp.c_proj for b in t.h]
            self.final_norm = t.ln_f
            self.norm_kind = "layernorm"
            self.eps = t.ln_f.eps
            # Conv1D weight is [in, out]; transpose to [out=d_model, in]
            self.W_O = [b.attn.c_proj.weight.detach().T.contiguous() for b in t.h]
            self.b_O = [b.attn.c_proj.bias.detach() for b in t.h]
            self.W_down = [b.mlp.c_proj.weight.detach().T.contiguous() for b in t.h]
            self.b_down = [b.mlp.c_proj.bias.detach() for b in t.h]
            self.gamma = t.ln_f.weight.detach()
            self.beta = t.ln_f.bias.detach()
        elif self.family in ("llama", "qwen2", "qwen3", "mistral", "phi3", "granite"):  # llama's modules (+ biases, q/k norms)
            m = model.model
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            self.embed_mod = m.embed_tokens
            self.attn_out = [l.self_attn.o_proj for l in m.layers]
            self.mlp_out = [l.mlp for l in m.layers]
            self.down = [l.mlp.down_proj for l in m.layers]
            self.final_norm = m.norm
            self.norm_kind = "rmsnorm"
            self.eps = m.norm.variance_epsilon
            self.W_O = [l.self_attn.o_proj.weight.detach() for l in m.layers]   # [out, in]
            self.b_O = [None if l.self_attn.o_proj.bias is None else l.self_attn.o_proj.bias.detach()
                        for l in m.layers]
            self.W_down = [l.mlp.down_proj.weight.detach() for l in m.layers]
            self.b_down = [None if l.mlp.down_proj.bias is None else l.mlp.down_proj.bias.detach()
                           for l in m.layers]
            self.gamma = m.norm.weight.detach()
            self.beta = None
        elif self.family == "olmo2":
            # post norms, no pre norms: a component's output is its post norm's
            # output (what it adds to the residual); heads are o_proj's input
            m = model.model
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
            self.embed_mod = m.embed_tokens
            self.attn_out = [l.post_attention_layernorm for l in m.layers]
            self.mlp_out = [l.post_feedforward_layernorm for l in m.layers]
            self.o_proj = [l.self_attn.o_proj for l in m.layers]
            self.down = [l.mlp.down_proj for l in m.layers]
            self.final_norm = m.norm
            self.norm_kind = "rmsnorm"
            self.eps = m.norm.variance_epsilon
            self.W_O = [l.self_attn.o_proj.weight.detach() for l in m.layers]
            self.b_O = [None if l.self_attn.o_proj.bias is None else l.self_attn.o_proj.bias.detach()
                        for l in m.layers]
            self.W_down = [l.mlp.down_proj.weight.detach() for l in m.layers]
            self.b_down = [None for l in m.layers]
            self.gamma = m.norm.weight.detach()
            self.beta = None
        elif self.family in ("gemma", "gemma2", "gemma3_text"):
            # RMSNorms scale by (1 + w); the scaled embedding is embed_tokens'
            # output; Gemma 2/3's components are their post norms' outputs
            m = model.model
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = c.head_dim
            self.embed_mod = m.embed_tokens
            if self.family == "gemma":
                self.attn_out = [l.self_attn.o_proj for l in m.layers]
                self.mlp_out = [l.mlp for l in m.layers]
            else:
                self.attn_out = [l.post_attention_layernorm for l in m.layers]
                self.mlp_out = [l.post_feedforward_layernorm for l in m.layers]
                self.o_proj = [l.self_attn.o_proj for l in m.layers]
            self.down = [l.mlp.down_proj for l in m.layers]
            self.final_norm = m.norm
            self.norm_kind = "rmsnorm"
            self.norm_offset = 1.0
            self.eps = m.norm.eps
            self.W_O = [l.self_attn.o_proj.weight.detach() for l in m.layers]
            self.b_O = [None if l.self_attn.o_proj.bias is None else l.self_attn.o_proj.bias.detach()
                        for l in m.layers]
            self.W_down = [l.mlp.down_proj.weight.detach() for l in m.layers]
            self.b_down = [None for l in m.layers]
            self.gamma = 1.0 + m.norm.weight.detach()
            self.beta = None
            self.final_softcap = getattr(c, "final_logit_softcapping", None)
        elif self.family == "gptj":
            # one ln_1 read by attention and MLP side by side; lm_head has a bias
            t = model.transformer
            self.n_layers = c.n_layer
            self.n_heads = c.n_head
            self.d_model = c.n_embd
            self.head_dim = c.n_embd // c.n_head
            self.embed_mod = t.wte
            self.attn_out = [b.attn.out_proj for b in t.h]
            self.mlp_out = [b.mlp for b in t.h]
            self.down = [b.mlp.fc_out for b in t.h]
            self.final_norm = t.ln_f
            self.norm_kind = "layernorm"
            self.eps = t.ln_f.eps
            self.W_O = [b.attn.out_proj.weight.detach() for b in t.h]
            self.b_O = [None for b in t.h]
            self.W_down = [b.mlp.fc_out.weight.detach() for b in t.h]
            self.b_down = [b.mlp.fc_out.bias.detach() for b in t.h]
            self.gamma = t.ln_f.weight.detach()
            self.beta = t.ln_f.bias.detach()
        elif self.family == "opt":
            # pre-norm OPT; no module outputs token + position embeddings, so
            # `embed` is the first decoder layer's input
            m = model.model.decoder
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = c.hidden_size // c.num_attention_heads
            self.embed_mod = m.layers[0]
            self.embed_is_input = True
            self.attn_out = [l.self_attn.out_proj for l in m.layers]
            self.mlp_out = [l.fc2 for l in m.layers]
            self.down = [l.fc2 for l in m.layers]
            self.final_norm = m.final_layer_norm
            self.norm_kind = "layernorm"
            self.eps = m.final_layer_norm.eps
            self.W_O = [l.self_attn.out_proj.weight.detach() for l in m.layers]
            self.b_O = [l.self_attn.out_proj.bias.detach() for l in m.layers]
            self.W_down = [l.fc2.weight.detach() for l in m.layers]
            self.b_down = [l.fc2.bias.detach() for l in m.layers]
            self.gamma = m.final_layer_norm.weight.detach()
            self.beta = m.final_layer_norm.bias.detach()
        elif self.family == "stablelm":
            # llama's modules with LayerNorms (biases); parallel or not
            m = model.model
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = c.hidden_size // c.num_attention_heads
            self.embed_mod = m.embed_tokens
            self.attn_out = [l.self_attn.o_proj for l in m.layers]
            self.mlp_out = [l.mlp for l in m.layers]
            self.down = [l.mlp.down_proj for l in m.layers]
            self.final_norm = m.norm
            self.norm_kind = "layernorm"
            self.eps = m.norm.eps
            self.W_O = [l.self_attn.o_proj.weight.detach() for l in m.layers]
            self.b_O = [None for l in m.layers]
            self.W_down = [l.mlp.down_proj.weight.detach() for l in m.layers]
            self.b_down = [None for l in m.layers]
            self.gamma = m.norm.weight.detach()
            self.beta = m.norm.bias.detach()
        elif self.family == "gpt_neo":
            # GPT-2's layout with nn.Linear projections ([out, in])
            t = model.transformer
            self.n_layers = c.num_layers
            self.n_heads = c.num_heads
            self.d_model = c.hidden_size
            self.head_dim = c.hidden_size // c.num_heads
            self.embed_mod = t.drop            # its output = wte(ids) + wpe(pos)
            self.attn_out = [b.attn.attention.out_proj for b in t.h]
            self.mlp_out = [b.mlp for b in t.h]
            self.down = [b.mlp.c_proj for b in t.h]
            self.final_norm = t.ln_f
            self.norm_kind = "layernorm"
            self.eps = t.ln_f.eps
            self.W_O = [b.attn.attention.out_proj.weight.detach() for b in t.h]
            self.b_O = [b.attn.attention.out_proj.bias.detach() for b in t.h]
            self.W_down = [b.mlp.c_proj.weight.detach() for b in t.h]
            self.b_down = [b.mlp.c_proj.bias.detach() for b in t.h]
            self.gamma = t.ln_f.weight.detach()
            self.beta = t.ln_f.bias.detach()
        elif self.family == "phi":
            # one input_layernorm read by attention and MLP side by side
            m = model.model
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = c.hidden_size // c.num_attention_heads
            self.embed_mod = m.embed_tokens
            self.attn_out = [l.self_attn.dense for l in m.layers]
            self.mlp_out = [l.mlp for l in m.layers]
            self.down = [l.mlp.fc2 for l in m.layers]
            self.final_norm = m.final_layernorm
            self.norm_kind = "layernorm"
            self.eps = m.final_layernorm.eps
            self.W_O = [l.self_attn.dense.weight.detach() for l in m.layers]
            self.b_O = [l.self_attn.dense.bias.detach() for l in m.layers]
            self.W_down = [l.mlp.fc2.weight.detach() for l in m.layers]
            self.b_down = [l.mlp.fc2.bias.detach() for l in m.layers]
            self.gamma = m.final_layernorm.weight.detach()
            self.beta = m.final_layernorm.bias.detach()
        elif self.family == "gpt_neox":
            # parallel residual or not, every component adds its output to the
            # residual stream, so the final norm's input is still their sum
            m = model.gpt_neox
            self.n_layers = c.num_hidden_layers
            self.n_heads = c.num_attention_heads
            self.d_model = c.hidden_size
            self.head_dim = c.hidden_size // c.num_attention_heads
            self.embed_mod = m.embed_in
            self.attn_out = [l.attention.dense for l in m.layers]
            self.mlp_out = [l.mlp for l in m.layers]
            self.down = [l.mlp.dense_4h_to_h for l in m.layers]
            self.final_norm = m.final_layer_norm
            self.norm_kind = "layernorm"
            self.eps = m.final_layer_norm.eps
            self.W_O = [l.attention.dense.weight.detach() for l in m.layers]   # [out, in]
            self.b_O = [None if l.attention.dense.bias is None else l.attention.dense.bias.detach()
                        for l in m.layers]
            self.W_down = [l.mlp.dense_4h_to_h.weight.detach() for l in m.layers]
            self.b_down = [l.mlp.dense_4h_to_h.bias.detach() for l in m.layers]
            self.gamma = m.final_layer_norm.weight.detach()
            self.beta = m.final_layer_norm.bias.detach()
        else:
            raise SystemExit(f"unsupported model_type {self.family}")
        # heads are read at the output projection's input; without post norms
        # that projection is the attention's output module
        self.norm_offset = getattr(self, "norm_offset", 0.0)   # Gemma: (1 + w)
        self.embed_is_input = getattr(self, "embed_is_input", False)
        # learned positions: the token and position tables (position p's row)
        if self.family in ("gpt2", "gpt_neo"):
            self.wte = model.transformer.wte.weight.detach()
            self.wpe = model.transformer.wpe.weight.detach()
        elif self.family == "opt":  # OPT adds 2 to every position id
            self.wte = model.model.decoder.embed_tokens.weight.detach()
            self.wpe = model.model.decoder.embed_positions.weight.detach()[2:]
        else:
            self.wte = self.wpe = None
        # Granite multiplies the embeddings and each sublayer's output outside
        # any module: a component's output (what it adds) is the hooked value
        # times these; interventions, linear, act on the hooked value alike
        self.out_scales = {"embed": float(getattr(c, "embedding_multiplier", 1.0)),
                           "attn": float(getattr(c, "residual_multiplier", 1.0)),
                           "mlp": float(getattr(c, "residual_multiplier", 1.0))}
        self.out_scales.update(head=self.out_scales["attn"], neuron=self.out_scales["mlp"])
        # Granite's logits are the unembedding's output / logits_scaling: with
        # an RMSNorm that is the final norm's scale divided by it
        if float(getattr(c, "logits_scaling", 1.0)) != 1.0:
            assert self.beta is None
            self.gamma = self.gamma / float(c.logits_scaling)
        self.final_softcap = getattr(self, "final_softcap", None)
        self.post_norms = hasattr(self, "o_proj")
        if not self.post_norms:
            self.o_proj = self.attn_out
        lm_head = model.get_output_embeddings()            # lm_head; gpt_neox: embed_out
        self.b_U = None if getattr(lm_head, "bias", None) is None else lm_head.bias.detach()
        self.W_U = lm_head.weight.detach()                 # [vocab, d_model]
        self.W_U_mean = self.W_U.mean(0)
        self.d_ff = self.W_down[0].shape[1]
        self.component_order = ["embed"]
        for L in range(self.n_layers):
            self.component_order += [f"attn.{L}", f"mlp.{L}"]

    # -- hook points ----------------------------------------------------------
    def hook_point(self, comp):
        """(module, 'out' | 'in', index into the last axis or None) for a component name."""
        parts = comp.split(".")
        kind = parts[0]
        if kind == "embed":
            return self.embed_mod, "in" if self.embed_is_input else "out", None
        L = int(parts[1])
        if kind == "attn":
            return self.attn_out[L], "out", None
        if kind == "mlp":
            return self.mlp_out[L], "out", None
        if kind == "head":
            H = int(parts[2])
            return self.o_proj[L], "in", slice(H * self.head_dim, (H + 1) * self.head_dim)
        if kind == "neuron":
            return self.down[L], "in", int(parts[2])
        raise ValueError(comp)

    # -- direct effects ---------------------------------------------------------
    def inv_scale(self, x):
        """Final norm's 1/scale for one residual vector x (fp32)."""
        if self.norm_kind == "layernorm":
            var = x.var(unbiased=False)
            return torch.rsqrt(var + self.eps)
        return torch.rsqrt(x.pow(2).mean() + self.eps)

    def u(self, target):
        return self.W_U[target] - self.W_U_mean

    def de(self, y, inv, u):
        if self.norm_kind == "layernorm":
            y = y - y.mean()
        return float(((y * inv) * self.gamma) @ u)

    def bias_term(self, u, t):
        """The final norm's bias term beta . u, plus, with an lm_head bias
        (Phi-2), its centred share b[t] - mean b: the constants of the
        centred logit that no component carries."""
        b = 0.0 if self.beta is None else float(self.beta @ u)
        return b if self.b_U is None else b + float(self.b_U[t] - self.b_U.mean())

    def head_vec(self, comp, value):
        _, L, H = comp.split(".")
        L, H = int(L), int(H)
        return self.W_O[L][:, H * self.head_dim:(H + 1) * self.head_dim] @ value

    def neuron_vec(self, comp, value):
        _, L, N = comp.split(".")
        return self.W_down[int(L)][:, int(N)] * value

    def extra_vec(self, comp, value):
        return self.head_vec(comp, value) if comp.startswith("head.") else self.neuron_vec(comp, value)

    def comp_out(self, comp, y):
        """A hooked component value as what it adds to the residual stream."""
        s = self.out_scales[comp.split(".")[0]]
        return y if s == 1.0 else y * s

    def post_frozen(self, comp, cap, y):
        """With post norms, a head's (neuron's) share y of its sublayer's
        output before the post norm, through that norm frozen at the run's own
        scale (RMSNorm: y / rms * gamma), so that a layer's heads (neurons)
        and its bias share add up to attn.L (mlp.L); without, y itself."""
        if not self.post_norms:
            return self.comp_out(comp, y)
        L = int(comp.split(".")[1])
        if comp.startswith("head."):
            pre = self.W_O[L] @ cap["attn_in"][L] + (0 if self.b_O[L] is None else self.b_O[L])
            norm = self.attn_out[L]
        else:
            pre = self.W_down[L] @ cap["down_in"][L] + (0 if self.b_down[L] is None else self.b_down[L])
            norm = self.mlp_out[L]
        assert self.norm_kind == "rmsnorm"
        eps = getattr(norm, "variance_epsilon", None) or norm.eps
        return y * torch.rsqrt(pre.pow(2).mean() + eps) * (self.norm_offset + norm.weight.detach())


# ---------------------------------------------------------------------------
# One forward pass with optional interventions and captures
# ---------------------------------------------------------------------------
def batched(x):
    """x as [batch, T, ...]: OPT runs its MLP on the tokens flattened to [T, d]
    (batch 1 here); a view, so writes reach x."""
    return x.unsqueeze(0) if x.dim() == 2 else x


def forward(arch, ids, interventions=None, positions="last", inputs_embeds=None):
    """Run one prompt. interventions: {component: fn(clean_value) -> new_value},
    applied at the final position only (positions="last"), or with
    positions="all" to the component's values at every position at once (fn
    gets and returns a [T, ...] tensor). inputs_embeds: passed to the model
    instead of the ids (for the self-checks). Returns a dict with the
    final-position logits, every component's output there (after any
    intervention), every layer's o_proj input and down_proj input there, and
    the final norm input."""
    assert positions in ("last", "all")
    interventions = interventions or {}
    handles = []
    cap = {"attn_in": {}, "down_in": {}}

    def out_hook(fn, idx):
        def hook(mod, args, out):
            out = out.clone()
            full, out = out, batched(out)
            if positions == "all":
                if idx is None:
                    out[0] = fn(out[0].clone())
                else:
                    out[0, :, idx] = fn(out[0, :, idx].clone())
            elif idx is None:
                out[0, -1] = fn(out[0, -1].clone())
            else:
                out[0, -1, idx] = fn(out[0, -1, idx].clone())
            return full
        return hook

    def in_hook(fn, idx):
        def hook(mod, args):
            x = args[0].clone()
            full, x = x, batched(x)
            if positions == "all":
                if idx is None:
                    x[0] = fn(x[0].clone())
                else:
                    x[0, :, idx] = fn(x[0, :, idx].clone())
            elif idx is None:
                x[0, -1] = fn(x[0, -1].clone())
            else:
                x[0, -1, idx] = fn(x[0, -1, idx].clone())
            return (full,) + tuple(args[1:])
        return hook

    # interventions first: hooks run in registration order, so the captures
    # registered below see the intervened values.
    for comp, fn in interventions.items():
        mod, where, idx = arch.hook_point(comp)
        if where == "out":
            handles.append(mod.register_forward_hook(out_hook(fn, idx)))
        else:
            handles.append(mod.register_forward_pre_hook(in_hook(fn, idx)))

    def cap_out(name):
        def hook(mod, args, out):
            cap[name] = batched(out)[0, -1].detach().clone()
        return hook

    def cap_in(group, L):
        def hook(mod, args):
            cap[group][L] = batched(args[0])[0, -1].detach().clone()
        return hook

    if arch.embed_is_input:  # OPT: the embeddings are the first layer's input
        handles.append(arch.embed_mod.register_forward_pre_hook(
            lambda mod, args: cap.__setitem__("embed", args[0][0, -1].detach().clone())))
    else:
        handles.append(arch.embed_mod.register_forward_hook(cap_out("embed")))
    for L in range(arch.n_layers):
        handles.append(arch.attn_out[L].register_forward_hook(cap_out(f"attn.{L}")))
        handles.append(arch.mlp_out[L].register_forward_hook(cap_out(f"mlp.{L}")))
        handles.append(arch.o_proj[L].register_forward_pre_hook(cap_in("attn_in", L)))
        handles.append(arch.down[L].register_forward_pre_hook(cap_in("down_in", L)))
    handles.append(arch.final_norm.register_forward_pre_hook(
        lambda mod, args: cap.__setitem__("resid", args[0][0, -1].detach().clone())))
    # the unembedding's own output: the logits before any final soft-cap
    handles.append(arch.model.get_output_embeddings().register_forward_hook(
        lambda mod, args, out: cap.__setitem__("logits", out[0, -1].detach().clone())))
    try:
        with torch.no_grad():
            if inputs_embeds is None:
                logits = arch.model(input_ids=torch.tensor([ids], dtype=torch.long), use_cache=False).logits
            else:
                assert inputs_embeds.shape[0] == len(ids)
                logits = arch.model(inputs_embeds=inputs_embeds[None], use_cache=False).logits
    finally:
        for h in handles:
            h.remove()
    assert logits.dtype == torch.float32
    if "embed" not in cap:  # inputs_embeds bypass embed_tokens (Gemma's scale is inside it)
        cap["embed"] = inputs_embeds[-1].detach().clone()
    # out_logits: the model's output (capped where it has a final soft-cap),
    # whose distribution the log-prob, KL and rank read; logits: pre-cap
    cap["out_logits"] = logits[0, -1].detach().clone()
    if arch.final_softcap is None:  # (Granite divides the unembedding's output by logits_scaling)
        cap["logits"] = cap["out_logits"]
    else:
        c = arch.final_softcap
        assert torch.allclose(torch.tanh(cap["logits"] / c) * c, cap["out_logits"], atol=1e-6)
    return cap


def comp_value(arch, cap, comp):
    """Value of a component at the final position in a captured run."""
    if comp.startswith("head."):
        _, L, H = comp.split(".")
        H = int(H)
        return cap["attn_in"][int(L)][H * arch.head_dim:(H + 1) * arch.head_dim]
    if comp.startswith("neuron."):
        _, L, N = comp.split(".")
        return cap["down_in"][int(L)][int(N)]
    return cap[comp]


def centred(logits):
    return logits - logits.mean()


def extra_de(arch, cap, comp, inv, u):
    return arch.de(arch.post_frozen(comp, cap, arch.extra_vec(comp, comp_value(arch, cap, comp))), inv, u)


# ---------------------------------------------------------------------------
def all_positions(arch, cleans, means, all_plan, heads, neurons, last_rows):
    """Self-checks and rows of the ablations at every position."""
    n = len(cleans)
    comps, methods = all_plan
    pick = {"heads": heads, "neurons": neurons}
    comps = [pick[c.split("[")[0]][int(c.split("[")[1].rstrip("]"))] if "[" in c else c for c in comps]
    log(f"  all positions: components {comps}, methods {methods}")

    # no-op interventions at every position
    worst = 0.0
    for i in (0, n - 1):
        for c in comps:
            for m in ("scale:1.0", {"patch": i}):
                r = ablate(arch, cleans[i], c, m, cleans, means, "all")
                worst = max(worst, abs(r["total_effect"]), abs(r["kl"]))
    assert worst <= 1e-5, worst
    log(f"  all positions: no-op checks (scale:1.0, patch from itself): max |effect|, |kl| = {worst:.2e}")

    # zero at every position == weights zeroed (every record field)
    worst = 0.0
    for c in comps:
        with weights_zeroed(arch, c) as embeds:
            ref = [record(arch, cl, forward(arch, cl["ids"], inputs_embeds=embeds(len(cl["ids"]))), c)
                   for cl in cleans]
        for i, cl in enumerate(cleans):
            worst = max(worst, record_diff(ablate(arch, cl, c, "zero", cleans, means, "all"), ref[i]))
    log(f"  all positions: zero by hook vs weights zeroed: max |diff| = {worst:.2e}")
    assert worst <= 1e-5, worst

    # patch of embed at every position == the model run on the patched input:
    # ids_i[:n_i-n_j] + ids_j[-n_i:] for llama (exact); gpt2 also carries the
    # source's wpe, so feed inputs_embeds = patched embed - wpe[:n_i] (rounding)
    worst = 0.0
    for i, cl in enumerate(cleans):
        j = (i + 1) % n
        ids_i, ids_j = cl["ids"], cleans[j]["ids"]
        n_i, n_j = len(ids_i), len(ids_j)
        mixed = ids_i[:max(0, n_i - n_j)] + ids_j[max(0, n_j - n_i):]
        assert len(mixed) == n_i
        if arch.wpe is not None:  # learned positions
            pos = [p if p < n_i - n_j else p - n_i + n_j for p in range(n_i)]
            e = (arch.wte[mixed] + arch.wpe[pos] - arch.wpe[:n_i]).detach()
            cap = forward(arch, ids_i, inputs_embeds=e)
        else:
            cap = forward(arch, mixed)
        ref = record(arch, cl, cap, ("embed", "mixed ids"))
        worst = max(worst, record_diff(ablate(arch, cl, "embed", {"patch": j}, cleans, means, "all"), ref))
    log(f"  all positions: embed patch vs the model run on the patched input: max |diff| = {worst:.2e}")
    assert worst <= (1e-5 if arch.wpe is not None else 1e-6), worst

    rows = []
    for i in range(n):
        for c in comps:
            for m in methods:
                m = {"patch": (i + 1) % n} if m == "patch" else m
                r = ablate(arch, cleans[i], c, m, cleans, means, "all")
                rows.append({"prompt": i, "component": c, "method": m, "positions": "all", **r})

    # a last-layer component reaches the final position's logits only at the
    # final position, so every position == the final position only
    last = arch.n_layers - 1
    key = lambda r: (r["prompt"], r["component"], json.dumps(r["method"]))
    by_key = {key(r): r for r in last_rows}
    worst, k = 0.0, 0
    for r in rows:
        c = r["component"]
        if c != "embed" and int(c.split(".")[1]) == last and key(r) in by_key:
            worst, k = max(worst, record_diff(r, by_key[key(r)])), k + 1
    log(f"  all positions: {k} last-layer rows vs their final-position rows: max |diff| = {worst:.2e}")
    assert k > 0 and worst <= 1e-6, (k, worst)
    return rows


def splitmix(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def resample_source(seed, p, c, s, n_prompts):
    """The source prompt hydra's engine draws for resample (prompt p, component
    index c in the job's component list, sample s): never p itself."""
    x = splitmix(splitmix(splitmix(seed ^ 0x68796472) ^ p) ^ ((c * 0x100000001B3) & M64) ^ s)
    r = x % (n_prompts - 1)
    return r if r < p else r + 1


def resample_rows(arch, cleans, means, comps, samples, seed, patch_rows):
    """Rows of resample ablations at the final position: for each prompt and
    component (index c in comps), the mean over `samples` draws of the record
    of a patch from the drawn source prompt."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("sweep_torch", SWEEP_TORCH)
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    n = len(cleans)
    key = lambda r: (r["prompt"], r["component"], json.dumps(r["method"]))
    by_key = {key(r): r for r in patch_rows if "positions" not in r}
    rows, draws, worst, k = [], {}, 0.0, 0
    for i in range(n):
        for c, comp in enumerate(comps):
            srcs = [resample_source(seed, i, c, s, n) for s in range(samples)]
            assert srcs == [sweep.hydra_draw(seed, i, c, s, n) for s in range(samples)], (i, c, srcs)
            assert all(0 <= j < n and j != i for j in srcs), srcs
            for j in srcs:
                draws[j] = draws.get(j, 0) + 1
            recs = [ablate(arch, cleans[i], comp, {"patch": j}, cleans, means) for j in srcs]
            # a draw that is the golden's own patch source gives that patch row
            for j, r in zip(srcs, recs):
                pr = by_key.get(key({"prompt": i, "component": comp, "method": {"patch": j}}))
                if pr is not None:
                    worst, k = max(worst, record_diff(r, pr)), k + 1
            avg = {f: sum(r[f] for r in recs) / samples
                   for f in ("ablated_logit", "total_effect", "ablated_inv_scale", "logprob", "kl", "rank")}
            avg["de_clean_scale"] = [sum(r["de_clean_scale"][q] for r in recs) / samples
                                     for q in range(len(arch.component_order))]
            rows.append({"prompt": i, "component": comp, "method": "resample", "samples": samples,
                         "seed": seed, "ablated_logit": avg["ablated_logit"],
                         "total_effect": avg["total_effect"], "de_clean_scale": avg["de_clean_scale"],
                         "ablated_inv_scale": avg["ablated_inv_scale"], "logprob": avg["logprob"],
                         "kl": avg["kl"], "rank": avg["rank"]})
    log(f"  resample: {len(rows)} rows ({len(comps)} components, {samples} samples, seed {seed}); "
        f"draws agree with {rel(SWEEP_TORCH)}; sources drawn {dict(sorted(draws.items()))}")
    log(f"  resample: {k} draws equal to the golden's patch source vs the patch rows: max |diff| = {worst:.2e}")
    assert k > 0 and worst == 0.0, (k, worst)
    return rows


def choose_extras(arch, cleans, kind):
    """Two heads (or neurons): the one with the largest mean |clean DE| over the
    prompts in the last layer, and the same in the layers below it."""
    n = arch.n_heads if kind == "head" else arch.d_ff
    scores = np.zeros((arch.n_layers, n))
    for cl in cleans:
        u, inv = cl["u"], cl["inv"]
        for L in range(arch.n_layers):
            if kind == "head":
                h = cl["cap"]["attn_in"][L].view(arch.n_heads, arch.head_dim)
                W = arch.W_O[L].view(arch.d_model, arch.n_heads, arch.head_dim)
                ys = torch.einsum("dhk,hk->hd", W, h)                   # [n_heads, d_model]
            else:
                ys = (arch.W_down[L] * cl["cap"]["down_in"][L]).T        # [d_ff, d_model]
            ys = arch.post_frozen(f"{kind}.{L}.0", cl["cap"], ys)
            if arch.norm_kind == "layernorm":
                ys = ys - ys.mean(1, keepdim=True)
            scores[L] += (((ys * cl["inv"]) * arch.gamma) @ u).abs().numpy()
    last = arch.n_layers - 1
    a = (last, int(scores[last].argmax()))
    lo = scores[:last]
    Lb, ib = np.unravel_index(int(lo.argmax()), lo.shape)
    return [f"{kind}.{Lb}.{ib}", f"{kind}.{a[0]}.{a[1]}"]


def method_fn(method, comp, cleans, means, arch):
    if method == "zero":
        return lambda v: torch.zeros_like(v)
    if isinstance(method, str) and method.startswith("scale:"):
        a = float(method.split(":")[1])
        return lambda v: v * a
    if method == "mean":
        m = means[comp]
        return lambda v: m.clone().reshape(v.shape)
    if isinstance(method, dict) and "patch" in method:
        src = comp_value(arch, cleans[method["patch"]]["cap"], comp)
        return lambda v: src.clone().reshape(v.shape)
    raise ValueError(method)


def full_value(arch, cl, comp):
    """A component's clean values at every position of a prompt ([T, ...]),
    cached in the clean record."""
    full = cl.setdefault("full", {})
    if comp not in full:
        box = {}

        def grab(v):
            box["v"] = v.clone()
            return v
        forward(arch, cl["ids"], {comp: grab}, positions="all")
        full[comp] = box["v"]
    return full[comp]


def method_fn_all(method, comp, cl, cleans, arch):
    """fn([T, ...]) -> [T, ...] for an intervention at every position."""
    if method == "zero":
        return lambda v: torch.zeros_like(v)
    if isinstance(method, str) and method.startswith("scale:"):
        a = float(method.split(":")[1])
        return lambda v: v * a
    if isinstance(method, dict) and "patch" in method:
        # align from the end: t -> t - n_i + n_j; positions with no source stay
        src = full_value(arch, cleans[method["patch"]], comp)
        n_i, n_j = len(cl["ids"]), src.shape[0]
        k = min(n_i, n_j)

        def fn(v):
            assert v.shape[0] == n_i
            v = v.clone()
            v[n_i - k:] = src[n_j - k:]
            return v
        return fn
    raise ValueError(method)


def ablate(arch, cl, comp, method, cleans, means, positions="last"):
    if positions == "last":
        fn = method_fn(method, comp, cleans, means, arch)
    else:
        fn = method_fn_all(method, comp, cl, cleans, arch)
    cap = forward(arch, cl["ids"], {comp: fn}, positions)
    return record(arch, cl, cap, (comp, method, positions))


def record(arch, cl, cap, what):
    """The per-ablation fields of a run's captures, against clean record cl."""
    t = cl["target"]
    lg = cap["logits"]
    c_abl = centred(lg)
    ablated_logit = float(c_abl[t])
    inv_abl = arch.inv_scale(cap["resid"])
    de_clean = [arch.de(arch.comp_out(c, cap[c]), cl["inv"], cl["u"]) for c in arch.component_order]
    # self-check: with the ablated run's own scale the direct effects add up
    # to the ablated centred logit (the captures saw the intervened values).
    de_abl_sum = sum(arch.de(arch.comp_out(c, cap[c]), inv_abl, cl["u"]) for c in arch.component_order) + arch.bias_term(cl["u"], t)
    assert abs(de_abl_sum - ablated_logit) <= DE_SUM_RTOL * max(1.0, abs(ablated_logit)), \
        (what, de_abl_sum, ablated_logit)
    out = cap["out_logits"]
    logp_abl = torch.log_softmax(out, -1)
    logp_clean = cl["logp"]
    kl = float((logp_clean.exp() * (logp_clean - logp_abl)).sum())
    rank = int((out > out[t]).sum())
    return {
        "ablated_logit": ablated_logit,
        "total_effect": cl["clean_logit"] - ablated_logit,
        "de_clean_scale": de_clean,
        "ablated_inv_scale": float(inv_abl),
        "logprob": float(logp_abl[t]),
        "kl": kl,
        "rank": rank,
    }


class weights_zeroed:
    """Context: component `comp` outputs zero at every position, by editing
    weights instead of a hook. Yields the inputs_embeds to pass to forward()
    for a prompt of length T (None: use the ids). gpt2's `embed` cannot zero
    wte (it is tied to the unembedding), so it feeds inputs_embeds = -wpe[:T],
    to which the model adds wpe[:T] back: exactly 0."""

    def __init__(self, arch, comp):
        self.arch, self.comp, self.saved = arch, comp, []

    def _zero(self, p, idx=None, value=0.0):
        self.saved.append((p, p.detach().clone()))
        if idx is None:
            p.fill_(value)
        else:
            p[idx] = value

    def __enter__(self):
        arch, c = self.arch, self.comp
        conv = arch.family == "gpt2"   # Conv1D weight is [in, out]
        with torch.no_grad():
            if c == "embed":
                if arch.wpe is not None:  # the model adds the positions back: exactly 0
                    return lambda T: -arch.wpe[:T]
                emb = arch.embed_mod.weight
                if emb.data_ptr() == arch.W_U.data_ptr():  # tied (Gemma): zero inputs instead
                    return lambda T: torch.zeros(T, arch.d_model)
                assert emb.data_ptr() != arch.W_U.data_ptr(), "tied embeddings"
                self._zero(emb)
                return lambda T: None
            L = int(c.split(".")[1])
            if c.startswith("mlp.") or c.startswith("attn."):
                lin = arch.mlp_out[L] if c.startswith("mlp.") else arch.attn_out[L]
                if isinstance(lin, torch.nn.Linear) or not arch.post_norms:
                    lin = arch.down[L] if c.startswith("mlp.") else arch.attn_out[L]
                    self._zero(lin.weight)
                else:  # a post norm: its scale (1 + w with Gemma's offset) zeroed
                    self._zero(lin.weight, value=-arch.norm_offset)
                if getattr(lin, "bias", None) is not None:  # a post norm (olmo2) has none
                    self._zero(lin.bias)
            elif c.startswith("head."):
                H = int(c.split(".")[2])
                sl = slice(H * arch.head_dim, (H + 1) * arch.head_dim)
                w = arch.o_proj[L].weight
                self._zero(w, (sl, slice(None)) if conv else (slice(None), sl))
            else:
                N = int(c.split(".")[2])
                w = arch.down[L].weight
                self._zero(w, (N, slice(None)) if conv else (slice(None), N))
        return lambda T: None

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, v in self.saved:
                p.copy_(v)
        return False


def record_diff(a, b):
    """Largest difference between two records' fields (rank: count mismatch)."""
    d = max(abs(a[k] - b[k]) for k in ("ablated_logit", "total_effect", "ablated_inv_scale", "logprob", "kl"))
    d = max(d, max(abs(x - y) for x, y in zip(a["de_clean_scale"], b["de_clean_scale"])))
    return max(d, float(a["rank"] != b["rank"]))


def make_golden(arch, name, model_field, prompts, plan, golden_dir, texts=None, tok=None, all_plan=None, weights_dtype=None,
                resample=None):
    """plan: list of (components, methods) groups; components is "main"
    (every main component), "heads" or "neurons". all_plan: None, or
    (components, methods) for ablations at every position; components may
    name "heads[k]" / "neurons[k]" for the k-th chosen unit. resample: None,
    or (samples, seed) for resample rows of every ablated component, appended
    last."""
    n = len(prompts)
    # ---- clean runs -------------------------------------------------------
    cleans = []
    for ids in prompts:
        cap = forward(arch, ids)
        lg = cap["logits"]
        t = int(lg.argmax())
        u = arch.u(t)
        inv = arch.inv_scale(cap["resid"])
        assert t == int(cap["out_logits"].argmax())  # a soft-cap keeps the order
        cl = {"ids": ids, "cap": cap, "target": t, "u": u, "inv": inv,
              "clean_logit": float(centred(lg)[t]), "logp": torch.log_softmax(cap["out_logits"], -1)}
        cl["de"] = [arch.de(arch.comp_out(c, cap[c]), inv, u) for c in arch.component_order]
        s = sum(cl["de"]) + arch.bias_term(u, t)
        err = abs(s - cl["clean_logit"])
        assert err <= DE_SUM_RTOL * max(1.0, abs(cl["clean_logit"])), (s, cl["clean_logit"])
        # the final-norm input is the sum of the components (residual stream)
        resid = sum(arch.comp_out(c, cap[c]) for c in arch.component_order)
        r_err = float((resid - cap["resid"]).abs().max() / cap["resid"].abs().max())
        assert r_err < 1e-5, r_err
        top2 = torch.topk(lg, 2).values
        log(f"  prompt {len(cleans)} ({len(ids)} tok): target {t}"
            + (f" {tok.decode([t])!r}" if tok else "")
            + f" clean centred logit {cl['clean_logit']:.5f}, top1-top2 {float(top2[0] - top2[1]):.4f}, "
            f"sum DE + bias {s:.5f} (err {err:.2e}), inv_scale {float(inv):.5f}")
        cleans.append(cl)

    heads = choose_extras(arch, cleans, "head")
    neurons = choose_extras(arch, cleans, "neuron")
    extras = heads + neurons
    log(f"  chosen heads {heads}, neurons {neurons}")
    for cl in cleans:
        cl["extra_de"] = {c: extra_de(arch, cl["cap"], c, cl["inv"], cl["u"]) for c in extras}
        # heads of a layer (+ o_proj bias) add up to attn.L; neurons (+ bias) to mlp.L
        # (with post norms: each through the post norm frozen at its clean scale)
        for c in extras:
            L = int(c.split(".")[1])
            kind = "attn" if c.startswith("head.") else "mlp"
            frozen = lambda y: arch.post_frozen(c, cl["cap"], y)
            if kind == "attn":
                parts = [arch.de(frozen(arch.head_vec(f"head.{L}.{H}",
                                                      comp_value(arch, cl["cap"], f"head.{L}.{H}"))),
                                 cl["inv"], cl["u"]) for H in range(arch.n_heads)]
                b = arch.b_O[L]
            else:
                parts = [arch.de(frozen(arch.W_down[L] @ cl["cap"]["down_in"][L]), cl["inv"], cl["u"])]
                b = arch.b_down[L]
            tot = sum(parts) + (0.0 if b is None else arch.de(frozen(b), cl["inv"], cl["u"]))
            ref = cl["de"][arch.component_order.index(f"{kind}.{L}")]
            assert abs(tot - ref) <= 1e-4 * max(1.0, abs(ref)), (c, tot, ref)

    # means over this golden's prompts of each component's clean final-position value
    all_comps = arch.component_order + extras
    means = {c: torch.stack([comp_value(arch, cl["cap"], c).reshape(-1) for cl in cleans]).mean(0)
             for c in all_comps}

    # ---- sanity checks: no-op interventions -------------------------------
    worst = 0.0
    for i in (0, n - 1):
        for c in all_comps:
            for m in ("scale:1.0", {"patch": i}):
                r = ablate(arch, cleans[i], c, m, cleans, means)
                worst = max(worst, abs(r["total_effect"]), abs(r["kl"]))
    assert worst <= 1e-5, worst
    log(f"  no-op checks (scale:1.0, patch from itself; prompts 0 and {n-1}): max |effect|, |kl| = {worst:.2e}")

    # ---- second method: last-layer components, zero, by editing weights ----
    # At the last layer a change at every position reaches the final position's
    # logits only through that position, so zeroing weights must match the hook.
    worst = 0.0
    last = arch.n_layers - 1
    for c in [f"mlp.{last}", f"attn.{last}"] + [e for e in extras if int(e.split(".")[1]) == last]:
        with weights_zeroed(arch, c):
            for i in range(n):
                lg = forward(arch, cleans[i]["ids"])["logits"]
                r = ablate(arch, cleans[i], c, "zero", cleans, means)
                worst = max(worst, abs(float(centred(lg)[cleans[i]["target"]]) - r["ablated_logit"]))
    log(f"  weight-zeroing check of last-layer zero ablations: max |diff| = {worst:.2e}")
    assert worst <= 1e-4, worst

    # ---- the ablations ----------------------------------------------------
    rows = []
    for comps, methods in plan:
        comps = {"main": arch.component_order, "heads": heads, "neurons": neurons}[comps]
        for i in range(n):
            for c in comps:
                for m in methods:
                    m = {"patch": (i + 1) % n} if m == "patch" else m
                    r = ablate(arch, cleans[i], c, m, cleans, means)
                    rows.append({"prompt": i, "component": c, "method": m, **r})

    if all_plan is not None:
        rows += all_positions(arch, cleans, means, all_plan, heads, neurons, rows)

    resample_comps = None
    if resample is not None:
        # the component list of hydra's test: first appearance in the ablations
        resample_comps = []
        for r in rows:
            if r["component"] not in resample_comps:
                resample_comps.append(r["component"])
        assert resample_comps == arch.component_order + extras, resample_comps
        rows += resample_rows(arch, cleans, means, resample_comps, *resample, rows)

    # ---- report a few things ----------------------------------------------
    for i, cl in enumerate(cleans):
        late_neg = [(c, round(d, 3)) for c, d in zip(arch.component_order, cl["de"])
                    if c.startswith("mlp.") and int(c.split(".")[1]) >= arch.n_layers // 2 and d < 0]
        zero_main = [r for r in rows if r["prompt"] == i and r["method"] == "zero" and "." in r["component"]
                     and r["component"].split(".")[0] in ("attn", "mlp")]
        top = sorted(zero_main, key=lambda r: -abs(r["total_effect"]))[:5]
        log(f"  prompt {i}: largest |total effect| (zero): "
            + ", ".join(f"{r['component']} {r['total_effect']:+.3f}" for r in top))
        log(f"  prompt {i}: late MLPs with negative clean DE: {late_neg}")

    # ---- write --------------------------------------------------------------
    def clean_rec(i, cl):
        rec = {"ids": [int(t) for t in cl["ids"]], "target": cl["target"],
               "clean_logit": rnd(cl["clean_logit"]), "inv_scale": rnd(cl["inv"]),
               "de": [rnd(x) for x in cl["de"]],
               "extra_de": {k: rnd(v) for k, v in cl["extra_de"].items()}}
        if texts is not None:
            rec["text"] = texts[i]
        return rec

    def abl_rec(r):
        out = {}
        for k, v in r.items():
            if isinstance(v, float):
                v = rnd(v)
            elif isinstance(v, list):
                v = [rnd(x) for x in v]
            out[k] = v
        return out

    lines = ["{",
             f'  "model": {json.dumps(model_field)},',
             f'  "source": {json.dumps(SOURCE)},',
             *([f'  "weights_dtype": {json.dumps(weights_dtype)},'] if weights_dtype else []),
             f'  "norm": {json.dumps(arch.norm_kind)},',
             f'  "component_order": {json.dumps(arch.component_order)},',
             f'  "heads": {json.dumps(heads)},',
             f'  "neurons": {json.dumps(neurons)},']
    if resample_comps is not None:
        lines += [f'  "resample_components": {json.dumps(resample_comps)},']
    lines += ['  "prompts": [']
    lines += ["    " + json.dumps(clean_rec(i, cl)) + ("," if i + 1 < n else "") for i, cl in enumerate(cleans)]
    lines += ["  ],", '  "ablations": [']
    lines += ["    " + json.dumps(abl_rec(r)) + ("," if k + 1 < len(rows) else "") for k, r in enumerate(rows)]
    lines += ["  ]", "}"]
    path = os.path.join(golden_dir, f"ablation_{name}.json")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path))  # parses
    log(f"  wrote {rel(path)} ({os.path.getsize(path)} bytes): {n} prompts, {len(rows)} ablations")


def load_eager(path, **kw):
    m = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager", **kw)
    m.eval()
    assert m.config._attn_implementation == "eager"
    return m


def round_to_bf16(model):
    """hydra's --weights-dtype bf16: every weight as torch rounds it to bfloat16
    (nearest, ties to even), the arithmetic still fp32."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))
    assert all(p.dtype == torch.float32 for p in model.parameters())


def tiny_prompts(seed, vocab):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab, size=n).tolist() for n in TINY_PROMPT_LENS]


TINY_PLAN = [("main", ["zero", "scale:0.5", "mean", "patch"]),
             ("heads", ["zero", "scale:0.5", "mean", "patch"]),
             ("neurons", ["zero", "scale:0.5", "mean", "patch"])]
# ablations at every position (tiny models only)
TINY_ALL_PLAN = (["attn.0", "mlp.1", "attn.2", "mlp.2", "heads[0]", "neurons[0]", "embed"], ["zero", "patch"])
TINY_RESAMPLE = (3, 11)  # (samples, seed): resample rows of every component (tiny models only)
SMOLLM2_PLAN = [("main", ["zero", "patch"]), ("heads", ["zero"]), ("neurons", ["zero"])]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests", help="output root (writes golden/ablation_*.json)")
    ap.add_argument("--smollm2", help="path to SmolLM2-135M-Instruct.Q4_1.gguf (skipped if absent)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(TINY_SEEDS),
                    help="make only these tiny models' goldens (SmolLM2 skipped); the others' "
                         "files are left alone")
    ap.add_argument("--weights-dtype", choices=["fp32", "bf16"], default="fp32",
                    help="bf16: every parameter of the tiny models rounded to bfloat16 by torch "
                         "(computed in fp32), written as ablation_<name>-bf16.json; SmolLM2 skipped")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    log(f"source: {SOURCE}, numpy {np.__version__}, python {sys.version.split()[0]}")
    data_dir = os.path.join(args.out, "data")
    golden_dir = os.path.join(args.out, "golden")
    os.makedirs(golden_dir, exist_ok=True)

    for name in args.only or ("tiny-gpt2", "tiny-llama"):
        path = os.path.join(data_dir, name)
        log(f"[{name}] {rel(path)}")
        model = load_eager(path)
        bf16 = args.weights_dtype == "bf16"
        if bf16:
            round_to_bf16(model)
        arch = Arch(model)
        prompts = tiny_prompts(TINY_SEEDS[name], model.config.vocab_size)
        make_golden(arch, name + ("-bf16" if bf16 else ""), rel(path), prompts, TINY_PLAN,
                    golden_dir, all_plan=TINY_ALL_PLAN, resample=TINY_RESAMPLE,
                    weights_dtype="bf16" if bf16 else None)

    if args.only:
        log("[smollm2-135m] skipped (--only)")
    elif args.smollm2 and args.weights_dtype == "bf16":
        log("[smollm2-135m] skipped (bf16 goldens are for the tiny models)")
    elif args.smollm2:
        log(f"[smollm2-135m] {args.smollm2}")
        d, f = os.path.split(os.path.abspath(args.smollm2))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
        model = load_eager(d, gguf_file=f)
        arch = Arch(model)
        prompts = [tok(s, add_special_tokens=False)["input_ids"] for s in SMOLLM2_PROMPTS]
        make_golden(arch, "smollm2-135m", "$SMOLLM2", prompts, SMOLLM2_PLAN, golden_dir,
                    texts=SMOLLM2_PROMPTS, tok=tok)
    else:
        log("[smollm2-135m] skipped (no --smollm2)")
    log("done")


if __name__ == "__main__":
    main()
