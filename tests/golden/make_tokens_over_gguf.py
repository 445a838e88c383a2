#!/usr/bin/env python3
"""tests/data/gguf/tokenizer_tokens_over.gguf: the SmolLM-style tokenizer of
tests/data/gguf/tokenizer_pre_smollm.gguf (1,500 tokens; its keys copied as
gguf-py reads them) with a token_embd.weight of 4 rows fewer (F16 zeros, 8
wide), a file llama.cpp refuses (its vocabulary must match the embedding):
the tokenizer could give ids the model has no row for. test_tokenizer
expects hydra to refuse the tokenizer, naming both counts.

usage: python tests/golden/make_tokens_over_gguf.py [ROOT]   (needs: gguf numpy)
"""
import os
import sys

import gguf

import numpy as np


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    src = os.path.join(root, "tests", "data", "gguf", "tokenizer_pre_smollm.gguf")
    dst = os.path.join(root, "tests", "data", "gguf", "tokenizer_tokens_over.gguf")
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.alignment"):
            continue
        value, vtype = field.contents(), field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, value, vtype, sub_type=sub)
    n_tokens = len(r.fields["tokenizer.ggml.tokens"].data)
    w.add_tensor("token_embd.weight", np.zeros((n_tokens - 4, 8), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"{dst}: {os.path.getsize(dst)} bytes")


if __name__ == "__main__":
    main()
