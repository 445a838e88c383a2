#!/usr/bin/env python3
"""make_n_params.py - the parameter count transformers gives each test
checkpoint (model.num_parameters(): a tied unembedding once), for
`hydra info`'s "parameters" line (tests/integration/test_family_info.sh).
A multimodal checkpoint counts its language model and lm_head only (hydra
loads nothing else). With --gguf FILE, the count transformers gives a GGUF
file it dequantises (transformers' gguf loader), printed, not written.

usage: python tests/golden/make_n_params.py [--gguf FILE]
writes tests/golden/n_params.json
"""
import json
import os
import sys

import torch
import transformers

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def count(model):
    inner = getattr(model, "model", None)
    lm = getattr(inner, "language_model", None)
    if lm is None:
        return model.num_parameters()
    n = lm.num_parameters()
    head = model.get_output_embeddings()
    if head is not None and head.weight.data_ptr() != lm.get_input_embeddings().weight.data_ptr():
        n += head.weight.numel()
    return n


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--gguf":
        path = os.path.abspath(sys.argv[2])
        m = transformers.AutoModelForCausalLM.from_pretrained(os.path.dirname(path),
                                                              gguf_file=os.path.basename(path))
        print(count(m))
        return
    data = os.path.join(ROOT, "tests", "data")
    out = {}
    for name in sorted(os.listdir(data)):
        if not os.path.exists(os.path.join(data, name, "config.json")):
            continue
        cfg = json.load(open(os.path.join(data, name, "config.json")))
        cls = (transformers.AutoModelForImageTextToText if "vision_config" in cfg
               else transformers.AutoModelForCausalLM)
        out[name] = count(cls.from_pretrained(os.path.join(data, name)))
    path = os.path.join(ROOT, "tests", "golden", "n_params.json")
    with open(path, "w") as f:
        json.dump({"source": f"transformers {transformers.__version__} num_parameters()",
                   "models": out}, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {path}: {len(out)} models")


if __name__ == "__main__":
    main()
