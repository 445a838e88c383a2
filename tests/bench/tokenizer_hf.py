#!/usr/bin/env python3
"""Hugging Face side of tests/bench/tokenizer.sh, and the benchmark's text.

  tokenizer_hf.py --make-docs OUT [--mb 4] [--seed 7] [--corpus FILE]
      writes OUT: documents of about 2 KB, one JSON string per line, drawn
      (seeded) from tests/data/tokenizer_corpus.txt: English-like sentences
      from the corpus's words (most of the text), and whole corpus cases
      (numbers, code, accents, Greek, CJK, Arabic, emoji, special tokens).
  tokenizer_hf.py --make-fuzz OUT [--n 3000] [--seed 7]
      writes OUT: random documents (seeded), one JSON string per line, mixing
      letters, digits, punctuation, every kind of Unicode space, combining
      marks, Greek, CJK, Arabic, emoji with joiners, control characters,
      `▁`, contractions and special-token spellings (tests/fuzz/tokenizer.sh).
  tokenizer_hf.py TOKENIZER DOCS [--runs 5] [--ids FILE]
      encodes DOCS with `tokenizers` (encode_batch, one thread), one warm-up
      pass then the median of the timed ones, and prints one key=value line
      like bench_tokenizer. TOKENIZER: a tokenizer.json, a model directory, or
      a GGUF (built as tests/golden/make_tokenizer_golden.py builds it; a
      tokenizer_pre_<name>.gguf as its golden: PRE_TYPES[name]).
      --ids: check that every document's ids equal the lines of FILE (hydra's).
"""
import argparse
import json
import os
import random
import statistics
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"


def make_docs(out, mb, seed, corpus_path):
    with open(corpus_path, encoding="utf-8") as f:
        cases = [json.loads(line) for line in f.read().split("\n") if line]
    words = [w for c in cases if c.isascii() for w in c.split()]
    rng = random.Random(seed)
    total, target = 0, int(mb * 1e6)
    with open(out, "w", encoding="utf-8") as f:
        while total < target:
            parts = []
            size = 0
            while size < 2000:
                if rng.random() < 0.15:
                    s = rng.choice(cases)
                else:
                    s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 30)))
                    s = s[:1].upper() + s[1:] + rng.choice([". ", ", ", "! ", "? ", ".\n", "\n\n"])
                parts.append(s)
                size += len(s.encode("utf-8"))
            doc = "".join(parts)
            total += len(doc.encode("utf-8"))
            f.write(json.dumps(doc, ensure_ascii=False).replace("\u2028", "\\u2028") + "\n")


FUZZ_POOLS = [
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", " \t\n\r\x0b\x0c",
    "\u00a0\u1680\u2000\u2005\u200a\u2028\u2029\u202f\u205f\u3000\u180e\u0085\u200b\ufeff",
    "\u0301\u0308\u0303\u0327", "\u00e9\u00e8\u00ea\u00eb\u00e0\u00e2\u00e4\u00f4\u00f6\u00fb"
    "\u00fc\u00e7\u00f1\u00c5\u00e5\u00f8\u0153\u00df\u00c9",
    "\u03b1\u03b2\u03b3\u03b4\u03b5\u03b6\u03b7\u03b8\u0391\u0392\u0393",
    "\u65e5\u672c\u8a9e\u4e2d\u6587\u5b57\u6f22\u304b\u306a\u30ab\u30ca\ud55c\uad6d\uc5b4",
    "\u0645\u0631\u062d\u0628\u0627\u0644\u0639",
    "\U0001F600\U0001F389\U0001F44D\U0001F3FD\U0001F468\U0001F469\U0001F467\U0001F3F3"
    "\U0001F308\u200d\ufe0f",
    "\u00b2\u00b3\u00b9\u00bd\u00bc\u216b\u2173\u0660\u0661\u0662\u0969\u096a\u096b",
    "\u2581", "\x00\x01\x1f\x7f\x80\x9f\ufffd\uffff\U0010fffd\ue000",
]
FUZZ_FRAGMENTS = ["<|endoftext|>", "<|pad|>", "<s>", "</s>", "<unk>", "<|im_start|>", "<|im_end|>",
                  "'s", "'S", "'ll", "'re", "n't", "<0x41>", "  ", "   ", "\n\n", "http://x.y/z?a=1",
                  "12345", "3.14"]


def make_fuzz(out, n, seed):
    rng = random.Random(seed)
    with open(out, "w", encoding="utf-8") as f:
        for _ in range(n):
            parts = []
            for _ in range(rng.randint(0, 60)):
                if rng.random() < 0.15:
                    parts.append(rng.choice(FUZZ_FRAGMENTS))
                else:
                    pool = rng.choice(FUZZ_POOLS)
                    parts.append("".join(rng.choice(pool) for _ in range(rng.randint(1, 6))))
            f.write(json.dumps("".join(parts)) + "\n")


def load_pre_type(path):
    """tests/data/gguf/tokenizer_pre_<name>.gguf as its golden was made: its
    tokens and merges, with the model's own pre-tokenizer for that name
    (tests/golden/make_tokenizer_golden.py's PRE_TYPES)."""
    import gguf
    from tokenizers import Tokenizer, models

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden"))
    from make_tokenizer_golden import PRE_TYPES, PRE_TYPES_IGNORE_MERGES

    r = gguf.GGUFReader(path)

    def strings(key):
        f = r.get_field(key)
        return [bytes(f.parts[i]).decode() for i in f.data]

    pre = strings("tokenizer.ggml.pre")[0]
    tokens = strings("tokenizer.ggml.tokens")
    types = r.get_field("tokenizer.ggml.token_type")
    control = [t for t, i in zip(tokens, types.data) if int(types.parts[i][0]) == gguf.TokenType.CONTROL]
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                               merges=[tuple(m.split(" ")) for m in strings("tokenizer.ggml.merges")],
                               ignore_merges=pre in PRE_TYPES_IGNORE_MERGES))
    tok.add_special_tokens(control)
    tok.pre_tokenizer = PRE_TYPES[pre]()
    return tok


def load(path):
    from tokenizers import Tokenizer, pre_tokenizers

    if path.endswith(".gguf") and os.path.basename(path).startswith("tokenizer_pre_"):
        return load_pre_type(path)
    if path.endswith(".gguf"):
        import gguf
        from transformers import AutoTokenizer

        d, name = os.path.split(os.path.abspath(path))
        tok = AutoTokenizer.from_pretrained(d, gguf_file=name).backend_tokenizer
        field = gguf.GGUFReader(path).get_field("tokenizer.ggml.pre")
        pre = bytes(field.parts[field.data[0]]).decode() if field else None
        if pre in ("smollm", "starcoder", "refact"):
            tok.pre_tokenizer = pre_tokenizers.Sequence([
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ])
        return tok
    if os.path.isdir(path):
        path = os.path.join(path, "tokenizer.json")
    return Tokenizer.from_file(path)


def bench(path, docs_path, runs, ids_path):
    import tokenizers

    tok = load(path)
    with open(docs_path, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip()]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    encs = tok.encode_batch(docs)  # warm-up
    n_tokens = sum(len(e.ids) for e in encs)
    if ids_path:
        with open(ids_path) as f:
            theirs = [[int(x) for x in line.split()] for line in f]
        bad = [i for i, (e, t) in enumerate(zip(encs, theirs)) if e.ids != t]
        if len(theirs) != len(encs) or bad:
            print(f"ids differ from hydra's on {len(bad)} of {len(encs)} documents "
                  f"(first: {bad[:5]})", file=sys.stderr)
            sys.exit(1)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        tok.encode_batch(docs)
        times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    print(f"backend=tokenizers-{tokenizers.__version__} docs={len(docs)} bytes={nbytes} "
          f"tokens={n_tokens} runs={runs} median_s={t:.4f} tokens_per_s={n_tokens / t:.0f} "
          f"mb_per_s={nbytes / t / 1e6:.2f} ids_match={'yes' if ids_path else 'unchecked'}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("tokenizer", nargs="?")
    ap.add_argument("docs", nargs="?")
    ap.add_argument("--make-docs")
    ap.add_argument("--make-fuzz")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--mb", type=float, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--corpus", default=os.path.join(here, "..", "data", "tokenizer_corpus.txt"))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ids")
    a = ap.parse_args()
    if a.make_docs:
        make_docs(a.make_docs, a.mb, a.seed, a.corpus)
    elif a.make_fuzz:
        make_fuzz(a.make_fuzz, a.n, a.seed)
    elif a.tokenizer and a.docs:
        bench(a.tokenizer, a.docs, a.runs, a.ids)
    else:
        ap.error("give TOKENIZER DOCS, or --make-docs OUT, or --make-fuzz OUT")


if __name__ == "__main__":
    main()
