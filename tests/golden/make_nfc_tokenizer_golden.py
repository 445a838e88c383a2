#!/usr/bin/env python3
"""Writes tests/golden/tokenizer_tiny-gpt2-nfc.jsonl for test_tokenizer.c: the
tiny-gpt2 tokenizer.json with an NFC normalizer ({"type": "NFC"}, which the
test sets the same way), run by Hugging Face `tokenizers` on every line of
tests/data/tokenizer_corpus.txt and on its NFD (so NFC has to compose).
Lines as make_tokenizer_golden.py writes them.

usage: /work/venv-ref/bin/python tests/golden/make_nfc_tokenizer_golden.py [ROOT]
"""
import json
import os
import sys
import unicodedata

from tokenizers import Tokenizer, normalizers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_golden import write_golden  # noqa: E402


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    tok = Tokenizer.from_file(os.path.join(root, "tests", "data", "tiny-gpt2", "tokenizer.json"))
    tok.normalizer = normalizers.NFC()
    with open(os.path.join(root, "tests", "data", "tokenizer_corpus.txt"), encoding="utf-8") as f:
        corpus = [json.loads(line) for line in f]
    cases = corpus + [d for d in (unicodedata.normalize("NFD", t) for t in corpus)
                      if d not in corpus]
    write_golden(os.path.join(root, "tests", "golden", "tokenizer_tiny-gpt2-nfc.jsonl"), tok, cases)


if __name__ == "__main__":
    main()
