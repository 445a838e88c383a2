#!/usr/bin/env python3
"""Writes GGUF files whose special-token ids are unset the way llama.cpp's
converters write them (0xFFFFFFFF) or lie outside the vocabulary, for
tests/unit/formats/test_gguf.c and tests/unit/tokenizer/test_tokenizer.c. gguf-py
(llama.cpp's own writer) writes them.

  tests/data/gguf/tiny_llama_unset_ids.gguf
      make_gguf_golden.py's small llama (vocabulary 8) with BOS = 0xFFFFFFFF,
      EOS = 11 (past the vocabulary), padding and separator = 0xFFFFFFFF
      (its tokenizer, like tiny_llama.gguf's, does not load: its merges name
      pieces it lacks; the model is what this file checks).
  tests/data/gguf/tiny_llama_tokenizer_unset_ids.gguf
      tiny_llama_tokenizer.gguf's metadata (make_tokenizer_golden.py), with
      BOS, unknown, padding and separator = 0xFFFFFFFF and EOS = 1005 (past
      the 1000 tokens); add_bos_token stays true. Transformers refuses this
      file (it indexes the token list with the id), so the test compares it
      with tokenizer_tiny-llama-gguf.jsonl, transformers' encoding of the
      original file, less the BOS that file prepends.

usage: python tests/golden/make_unset_ids_gguf.py [ROOT]   (needs: gguf numpy)
"""
import os
import sys

import gguf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_golden import finish, tiny_llama  # noqa: E402

UNSET = 0xFFFFFFFF


def tokenizer_copy(src, dst, overrides):
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch="llama")
    for key, field in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in overrides:
            continue
        vtype = field.types[0]
        sub = field.types[1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, field.contents(), vtype, sub_type=sub)
    for key, value in overrides.items():
        w.add_uint32(key, value)
    finish(w)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    data = os.path.join(root, "tests", "data", "gguf")
    small = dict(n_layers=2, d_model=8, n_heads=2, n_kv_heads=1, d_mlp=8, vocab=8)
    tiny_llama(os.path.join(data, "tiny_llama_unset_ids.gguf"), None, small,
               special={"bos_token_id": UNSET, "eos_token_id": 11, "padding_token_id": UNSET,
                        "seperator_token_id": UNSET})
    tokenizer_copy(os.path.join(data, "tiny_llama_tokenizer.gguf"),
                   os.path.join(data, "tiny_llama_tokenizer_unset_ids.gguf"),
                   {"tokenizer.ggml.bos_token_id": UNSET, "tokenizer.ggml.eos_token_id": 1005,
                    "tokenizer.ggml.unknown_token_id": UNSET,
                    "tokenizer.ggml.padding_token_id": UNSET,
                    "tokenizer.ggml.seperator_token_id": UNSET})
    for name in ("tiny_llama_unset_ids.gguf", "tiny_llama_tokenizer_unset_ids.gguf"):
        print(f"  {name}: {os.path.getsize(os.path.join(data, name))} bytes")


if __name__ == "__main__":
    main()
