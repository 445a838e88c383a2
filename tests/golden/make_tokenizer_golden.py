#!/usr/bin/env python3
"""Writes the tokenizer goldens for tests/unit/tokenizer/test_tokenizer.c with Hugging Face
`tokenizers` / `transformers` (and, as a cross-check, Google's `sentencepiece`),
so that hydra's tokenizer is checked against programs hydra did not write.

  tests/data/tiny-gpt2/tokenizer.json      byte-level BPE (GPT-2 pre-tokenizer),
                                           vocab 1000 incl. <|endoftext|> and
                                           <|pad|>, trained by `tokenizers` on a
                                           seeded corpus.
  tests/data/tiny-llama/tokenizer.json     SentencePiece-style BPE (vocab 1000,
                                           byte fallback, add_dummy_prefix),
                                           trained by `sentencepiece` and turned
                                           into a tokenizer.json by transformers'
                                           LlamaTokenizer (what it does for a
                                           Llama vocabulary).
  tests/data/gguf/tiny_llama_tokenizer.gguf  the same vocabulary as GGUF metadata
                                           (tokenizer.ggml.model "llama": tokens,
                                           scores, token types, no merges), written
                                           by gguf-py as llama.cpp's converter does.
  tests/golden/tokenizer_<name>.jsonl      one line per corpus case:
      {"text": str, "ids": [int], "decoded": str, "lossless": bool,
       "offsets": [[start, end]]}
      ids: encode(text) with the tokenizer's own special-token rule (BOS for
      the llama ones); decoded: decode(ids) without skipping special tokens;
      lossless: decode(encode(text, add_special_tokens=False)) == text;
      offsets: each token's span in the text as tokenizers reports it
      (character offsets turned into UTF-8 byte offsets; a token holding part
      of a character spans the whole character).
  names: tiny-gpt2, tiny-llama (tokenizer.json), tiny-llama-gguf (transformers
      loading the GGUF above), smollm2 (see below).

SmolLM2 (--smollm2 PATH.gguf): transformers builds the tokenizer from the GGUF's
metadata, but ignores tokenizer.ggml.pre = "smollm" and splits with plain GPT-2
rules. The real SmolLM2 tokenizer.json (HuggingFaceTB/SmolLM2-135M-Instruct), and
llama.cpp for "smollm", first split every digit on its own (pre_tokenizer
Sequence[Digits(individual_digits=True), ByteLevel]); the golden uses that
pre-tokenizer on the GGUF's vocabulary and merges. The cases where this differs
from transformers' plain GGUF tokenizer are printed. Its tokenizer.json is saved
to --smollm2-json (not committed; default
/work/models/smollm2-135m-tokenizer/tokenizer.json).

Corpus: tests/data/tokenizer_corpus.txt, one JSON string per line.

usage: python tests/golden/make_tokenizer_golden.py [--root ROOT] [--smollm2 GGUF]
       (needs: tokenizers transformers sentencepiece gguf numpy)
"""
import argparse
import json
import os
import random
import shutil
import sys
import tempfile

import gguf
import sentencepiece as spm
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SEED = 20241126

# Words for the seeded training text: English, plus every word of the test corpus.
WORDS = (
    "the of and to in is was for on that with as by at from his her it an are were which be this "
    "or had not but their has have they one its also first new after who two been more other into "
    "time all when there may would only over most such some year made these than many can later "
    "about people during three world city state where both while between known under war part "
    "including since however through he she tower river north south located capital france paris "
    "model token layer attention head neuron effect repair ablation language"
).split()


def read_corpus(root):
    path = os.path.join(root, "tests", "data", "tokenizer_corpus.txt")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f.read().split("\n") if line]


def training_text(corpus, seed):
    """Seeded sentences over WORDS and the corpus's own words, plus the corpus."""
    rng = random.Random(seed)
    words = WORDS + [w for case in corpus for w in case.split()]
    out = []
    for _ in range(4000):
        n = rng.randint(3, 24)
        s = " ".join(rng.choice(words) for _ in range(n))
        if rng.random() < 0.5:
            s = s.capitalize()
        if rng.random() < 0.2:
            s += " " + str(rng.randint(0, 10**rng.randint(1, 8)))
        out.append(s + rng.choice([".", ",", "!", "?", ":", "", "\n"]))
    return out + corpus * 3


def write_golden(path, tok, corpus, encode_plain=None):
    """tok: a tokenizers.Tokenizer. encode_plain(text) -> ids without specials."""
    with open(path, "w", encoding="utf-8") as f:
        for text in corpus:
            enc = tok.encode(text)
            ids = enc.ids
            plain = tok.encode(text, add_special_tokens=False).ids
            byte_at = [0]
            for ch in text:
                byte_at.append(byte_at[-1] + len(ch.encode("utf-8")))
            row = {
                "text": text,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "lossless": tok.decode(plain, skip_special_tokens=False) == text,
                "offsets": [[byte_at[a], byte_at[b]] for a, b in enc.offsets],
            }
            f.write(json.dumps(row, ensure_ascii=False).replace("\u2028", "\\u2028") + "\n")
    print("wrote", path)


def check_transformers(tf_tok, tok, corpus, name):
    """The transformers wrapper must give the same ids as the backend we record."""
    for text in corpus:
        a = tf_tok(text)["input_ids"]
        b = tok.encode(text).ids
        if a != b:
            sys.exit(f"{name}: transformers and tokenizers disagree on {text!r}: {a} vs {b}")


def tiny_gpt2(root, corpus):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_text(corpus, SEED), trainer=trainer)
    assert tok.get_vocab_size() == 1000, tok.get_vocab_size()
    path = os.path.join(root, "tests", "data", "tiny-gpt2", "tokenizer.json")
    tok.save(path)
    print("wrote", path)
    tok = Tokenizer.from_file(path)
    from transformers import PreTrainedTokenizerFast

    check_transformers(PreTrainedTokenizerFast(tokenizer_file=path), tok, corpus, "tiny-gpt2")
    write_golden(os.path.join(root, "tests", "golden", "tokenizer_tiny-gpt2.jsonl"), tok, corpus)


def train_sentencepiece(corpus, workdir):
    # No NUL in the training text: such a piece could not be a JSON object key
    # for most readers; the corpus's NUL case then exercises byte fallback.
    lines = [t.replace("\n", " ") for t in training_text(corpus, SEED + 1) if t.strip()]
    lines = [t for t in lines if "\0" not in t]
    train = os.path.join(workdir, "train.txt")
    with open(train, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    prefix = os.path.join(workdir, "sp")
    spm.SentencePieceTrainer.train(
        input=train, model_prefix=prefix, vocab_size=1000, model_type="bpe", byte_fallback=True,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        character_coverage=0.9995, num_threads=1, allow_whitespace_only_pieces=True,
        split_digits=False, minloglevel=2)
    return spm.SentencePieceProcessor(model_file=prefix + ".model")


def tiny_llama(root, corpus, workdir):
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = train_sentencepiece(corpus, workdir)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = generate_merges(vocab, dict(zip(pieces, scores)))
    tf_tok = LlamaTokenizer(vocab=vocab, merges=merges, add_bos_token=True)
    tok = tf_tok.backend_tokenizer
    path = os.path.join(root, "tests", "data", "tiny-llama", "tokenizer.json")
    tok.save(path)
    print("wrote", path)
    tok = Tokenizer.from_file(path)
    check_transformers(tf_tok, tok, corpus, "tiny-llama")

    # Cross-check against sentencepiece itself (informational: the two agree
    # except where sentencepiece's own rules differ, e.g. leading spaces).
    differ = [t for t in corpus if tok.encode(t, add_special_tokens=False).ids != sp.encode(t)]
    print(f"tiny-llama: sentencepiece and tokenizers agree on {len(corpus) - len(differ)}/"
          f"{len(corpus)} cases; they differ on {differ!r}")
    write_golden(os.path.join(root, "tests", "golden", "tokenizer_tiny-llama.jsonl"), tok, corpus)

    # The same vocabulary as a GGUF, as llama.cpp's convert_hf_to_gguf writes
    # a sentencepiece vocabulary: token types from the model, no merges.
    gpath = os.path.join(root, "tests", "data", "gguf", "tiny_llama_tokenizer.gguf")
    w = gguf.GGUFWriter(gpath, arch="llama")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    types = []
    for i in range(sp.get_piece_size()):
        if sp.is_unknown(i):
            types.append(gguf.TokenType.UNKNOWN)
        elif sp.is_control(i):
            types.append(gguf.TokenType.CONTROL)
        elif sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    w.add_token_types(types)
    w.add_bos_token_id(sp.bos_id())
    w.add_eos_token_id(sp.eos_id())
    w.add_unk_token_id(sp.unk_id())
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", gpath)

    from transformers import AutoTokenizer

    gdir, gname = os.path.split(gpath)
    tf_gguf = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    gtok = tf_gguf.backend_tokenizer
    check_transformers(tf_gguf, gtok, corpus, "tiny-llama-gguf")
    write_golden(os.path.join(root, "tests", "golden", "tokenizer_tiny-llama-gguf.jsonl"), gtok,
                 corpus)


def smollm2(root, corpus, gguf_path, json_out):
    from transformers import AutoTokenizer

    gdir, gname = os.path.split(os.path.abspath(gguf_path))
    tf_tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    plain = tf_tok.backend_tokenizer
    reader = gguf.GGUFReader(gguf_path)
    field = reader.get_field("tokenizer.ggml.pre")
    pre = bytes(field.parts[field.data[0]]).decode() if field else None
    assert pre == "smollm", pre
    tok = Tokenizer.from_str(plain.to_str())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    os.makedirs(os.path.dirname(json_out), exist_ok=True)
    tok.save(json_out)
    print("wrote", json_out, "(not committed)")
    for text in corpus:
        a, b = plain.encode(text).ids, tok.encode(text).ids
        if a != b:
            print(f"smollm2: digit split differs from transformers' GGUF tokenizer on {text!r}")
    write_golden(os.path.join(root, "tests", "golden", "tokenizer_smollm2.jsonl"), tok, corpus)


def family_tokenizers(root, corpus, workdir):
    """tests/data/tokenizers/<family>/tokenizer.json as transformers builds
    each family's own tokenizer (GemmaTokenizer: sentencepiece BPE with byte
    fallback and no dummy prefix; Qwen2Tokenizer: NFC, Qwen2's split,
    byte-level), from a vocabulary trained here, and
    tests/golden/tokenizer_family-<family>.jsonl from it."""
    from transformers import GemmaTokenizer, Qwen2Tokenizer
    from transformers.tokenization_utils_base import generate_merges

    made = {}
    sp = train_sentencepiece(corpus, workdir)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    pieces[:3] = ["<pad>", "<eos>", "<bos>"]  # Gemma's first ids (the trainer's <unk>, <s>, </s>)
    vocab = {p: i for i, p in enumerate(pieces)}
    vocab["<unk>"] = len(vocab)
    merges = generate_merges(vocab, dict(zip(pieces, scores)))
    made["gemma"] = GemmaTokenizer(vocab=vocab, merges=merges)

    trained = Tokenizer(models.BPE())
    qwen = Qwen2Tokenizer(vocab={"<|endoftext|>": 0}, merges=[]).backend_tokenizer
    trained.normalizer = qwen.normalizer
    trained.pre_tokenizer = qwen.pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    trained.train_from_iterator(training_text(corpus, SEED + 2), trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    made["qwen2"] = Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(m.split(" ")) if isinstance(m, str)
                                                                   else tuple(m) for m in model["merges"]])
    for family, tf_tok in made.items():
        path = os.path.join(root, "tests", "data", "tokenizers", family, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tf_tok.backend_tokenizer.save(path)
        print("wrote", path)
        tok = Tokenizer.from_file(path)
        check_transformers(tf_tok, tok, corpus, family)
        write_golden(os.path.join(root, "tests", "golden", f"tokenizer_family-{family}.jsonl"), tok, corpus)


# tokenizer.ggml.pre names and the pre-tokenizer of the model's own
# tokenizer.json that llama.cpp's name stands for (each a GGUF of one
# byte-level vocabulary and merges, see gguf_pre_types): GPT-2's expression, digits first,
# Qwen2's expression (stablelm2 too), Llama 3's, Mistral's tekken.
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
             r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
            r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
TEKKEN_RE = (r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
             r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
             r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# DeepSeek's tokenizer.json (DeepSeek LLM / V2: "deepseek-llm"; DeepSeek Coder:
# "deepseek-coder"): a Sequence of Isolated Splits, then Digits(individual_digits)
# and ByteLevel without a regex. The letter class is spelled by code point
# here (its characters include singletons that NFC would change: U+1F7D,
# U+1FBE, U+1FD3, U+1FDB, U+2126, U+212A).
DEEPSEEK_LETTER_RANGES = [
    (0x41, 0x5A), (0x61, 0x7A), (0xB5,), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x1BA), (0x1BC, 0x1BF),
    (0x1C4, 0x293), (0x295, 0x2AF), (0x370, 0x373), (0x376,), (0x377,), (0x37B, 0x37D), (0x37F,),
    (0x386,), (0x388, 0x38A), (0x38C,), (0x38E, 0x3A1), (0x3A3, 0x3F5), (0x3F7, 0x481),
    (0x48A, 0x52F), (0x531, 0x556), (0x10A0, 0x10C5), (0x13A0, 0x13F5), (0x13F8, 0x13FD),
    (0x1C90, 0x1CBA), (0x1CBD, 0x1CBF), (0x1D00, 0x1D2B), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A),
    (0x1E00, 0x1F15), (0x1F18, 0x1F1D), (0x1F20, 0x1F45), (0x1F48, 0x1F4D), (0x1F50, 0x1F57),
    (0x1F59,), (0x1F5B,), (0x1F5D,), (0x1F5F, 0x1F7D), (0x1F80, 0x1FB4), (0x1FB6, 0x1FBC),
    (0x1FBE,), (0x1FC2, 0x1FC4), (0x1FC6, 0x1FCC), (0x1FD0, 0x1FD3), (0x1FD6, 0x1FDB),
    (0x1FE0, 0x1FEC), (0x1FF2, 0x1FF4), (0x1FF6, 0x1FFC), (0x2102,), (0x2107,), (0x210A, 0x2113),
    (0x2115,), (0x2119, 0x211D), (0x2124,), (0x2126,), (0x2128,), (0x212A, 0x212D),
    (0x212F, 0x2134), (0x2139,), (0x213C, 0x213F), (0x2145, 0x2149), (0x214E,), (0x2183,),
    (0x2184,), (0x2C00, 0x2C7B), (0x2C7E, 0x2CE4), (0x2CEB, 0x2CEE), (0x2CF2,), (0x2CF3,),
    (0xA640, 0xA66D), (0xA680, 0xA69B), (0xA722, 0xA76F), (0xA771, 0xA787), (0xA78B, 0xA78E),
    (0xAB70, 0xABBF), (0xFB00, 0xFB06), (0xFB13, 0xFB17), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A),
    (0x10400, 0x1044F), (0x104B0, 0x104D3), (0x104D8, 0x104FB), (0x10C80, 0x10CB2),
    (0x10CC0, 0x10CF2), (0x118A0, 0x118DF), (0x1E900, 0x1E943)]
DEEPSEEK_LETTERS = "".join(chr(r[0]) + ("-" + chr(r[1]) if len(r) == 2 else "")
                           for r in DEEPSEEK_LETTER_RANGES)
DEEPSEEK_PUNCT_RE = "\\s?[!-/:-~\uFF01-\uFF0F\uFF1A-\uFF5E\u2018-\u201F\u3000-\u3002]+"
DEEPSEEK_CJK_RE = "[\u4E00-\u9FA5\u0800-\u4E00\uAC00-\uD7FF]+"
DEEPSEEK_LLM_SPLITS = ["[\r\n]", "\\s?[" + DEEPSEEK_LETTERS + "]+", DEEPSEEK_PUNCT_RE, r"\s+$",
                       DEEPSEEK_CJK_RE]
DEEPSEEK_CODER_SPLITS = ["[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", DEEPSEEK_CJK_RE]


def splits_then_bytes(exprs, digits=False):
    steps = [pre_tokenizers.Split(Regex(e), behavior="isolated", invert=False) for e in exprs]
    if digits:
        steps.append(pre_tokenizers.Digits(individual_digits=True))
    steps.append(pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False))
    return pre_tokenizers.Sequence(steps)


def split_then_bytes(expr):
    return splits_then_bytes([expr])


PRE_TYPES = {
    "gpt-2": lambda: pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    "command-r": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)]),
    "stablelm2": lambda: split_then_bytes(QWEN2_RE),
    "llama-bpe": lambda: split_then_bytes(LLAMA3_RE),
    "tekken": lambda: split_then_bytes(TEKKEN_RE),
    "deepseek-llm": lambda: splits_then_bytes(DEEPSEEK_LLM_SPLITS, digits=True),
    "deepseek-coder": lambda: splits_then_bytes(DEEPSEEK_CODER_SPLITS, digits=True),
    # Falcon's tokenizer.json: Digits and a three-digit Split after ByteLevel.
    "falcon": lambda: pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False)]),
    "bloom": lambda: split_then_bytes(" ?[^(\\s|[.,!?…。，、।۔،])]+"),
}
# Llama 3's and tekken's tokenizer.json have the BPE model's ignore_merges
# (a word that is a token is that token; llama.cpp sets it for these names).
PRE_TYPES_IGNORE_MERGES = {"llama-bpe", "tekken"}
# Names llama.cpp writes for the same pre-tokenizer as another (each gets its
# own file and golden, equal to its twin's).
PRE_TYPE_ALIASES = {
    "qwen2": "stablelm2",
    "smollm": "command-r",
    "olmo": "gpt-2",
}
for _alias, _twin in PRE_TYPE_ALIASES.items():
    PRE_TYPES[_alias] = PRE_TYPES[_twin]


# Texts on which those pre-tokenizers split differently (case runs,
# contractions, digits, runs of spaces and newlines, slashes), added to the
# corpus for these goldens only.
PRE_TYPE_CASES = [
    "CamelCaseWords and an HTTPServer in XMLHttpRequest",
    "DON'T stop: I'M here, you'RE there, we'Ve, they'LL, he'D, it'S",
    "line one\n\n  line two\r\n\tend\n",
    "x = 12345 + 6789 - 3.14159 * 2024",
    "path/to/file.txt\n/usr/bin//env\n",
    "   three leading spaces and two trailing  ",
    "ÉCOLE élève ŒUVRE Ärger über-Straße",
    "iPhone eBay McDonald O'Neill MacBookPro",
    "ПРИВЕТ мир ДОБРЫЙ День",
    "a\n\n\nb  \n  c\t\td",
]


# More texts for the goldens only (not in the vocabulary's training text, so
# the earlier names' files stay as they were): what DeepSeek's splits single
# out (full-width punctuation and digits, CJK and Hangul runs, the cased
# letters of its class and the singletons in it, symbols, trailing spaces).
PRE_TYPE_GOLDEN_CASES = [
    "你好，世界！ＡＢＣ ａｂｃ １２３ 「引用」。한국어，텍스트",
    "Ωμέγα ώ ΐ ῼ ι 5 K = 5 K, 10 Ω ℧ ℃",
    "def f(x):\n    return x**2 + $y <= z^3 | ~w `tick` @a #b\n",
    "مرحبا بالعالم 123 עברית ४२ हिन्दी",
    "tabs at the end\t\t  ",
    "x²³ вв 1234567 + 100,000.00 (a)--b...c!?",
    "(parens) [brackets] | pipes, dots… 。，、 ।۔، end",
]


def whole_word_tokens(pre, vocab, merges, texts, n=6):
    """Up to n words of texts (as pre splits them, byte-level spelled) that the
    merges spell as two or more tokens: added as tokens no merge makes, only
    ignore_merges gives them (a vocabulary whose merges reach every token, as
    one trained here, cannot tell ignore_merges apart)."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    out = []
    for text in texts:
        for piece, _ in pre.pre_tokenize_str(text):
            if len(piece) >= 4 and piece not in vocab and piece not in out and len(tok.model.tokenize(piece)) >= 2:
                out.append(piece)
                if len(out) == n:
                    return out
    return out


def gguf_pre_types(root, corpus):
    """tests/data/gguf/tokenizer_pre_<name>.gguf and
    tests/golden/tokenizer_pre-<name>.jsonl for every name of PRE_TYPES: a
    byte-level vocabulary trained without any split (so that its merges cross
    the boundaries where the pre-tokenizers differ), the same in every file."""
    cases = corpus + PRE_TYPE_CASES
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    trained.train_from_iterator(training_text(cases, SEED + 1) + PRE_TYPE_CASES * 20, trainer=trainer)
    base = json.loads(trained.to_str())
    vocab, merges = base["model"]["vocab"], base["model"]["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    specials = {t["content"]: t["id"] for t in base["added_tokens"] if t["special"]}
    tokens = [None] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    assert all(t is not None for t in tokens)
    merge_pairs = [tuple(m.split(" ")) for m in merges]
    base_tokens, base_vocab = tokens, vocab
    for name, make_pre in PRE_TYPES.items():
        tokens, vocab = base_tokens, base_vocab
        if name in PRE_TYPES_IGNORE_MERGES:
            extra = whole_word_tokens(make_pre(), vocab, merge_pairs, cases)
            tokens = tokens + extra
            vocab = dict(vocab, **{piece: len(base_tokens) + i for i, piece in enumerate(extra)})
        gpath = os.path.join(root, "tests", "data", "gguf", f"tokenizer_pre_{name}.gguf")
        w = gguf.GGUFWriter(gpath, arch="gpt2")
        w.add_context_length(128)
        w.add_embedding_length(64)
        w.add_block_count(1)
        w.add_head_count(4)
        w.add_layer_norm_eps(1e-5)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre(name)
        w.add_token_list(tokens)
        w.add_token_types([gguf.TokenType.CONTROL if t in specials else gguf.TokenType.NORMAL for t in tokens])
        w.add_token_merges(merges)
        w.add_eos_token_id(specials["<|endoftext|>"])
        if name in PRE_TYPES_IGNORE_MERGES:  # BOS set (not added): the test drops add_bos_token
            w.add_bos_token_id(specials["<|endoftext|>"])
        w.add_add_bos_token(False)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        print("wrote", gpath)
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merge_pairs,
                                   ignore_merges=name in PRE_TYPES_IGNORE_MERGES))
        tok.add_special_tokens(list(specials))
        tok.pre_tokenizer = make_pre()
        tok.decoder = decoders.ByteLevel()
        write_golden(os.path.join(root, "tests", "golden", f"tokenizer_pre-{name}.jsonl"), tok,
                     cases + PRE_TYPE_GOLDEN_CASES)
    goldens = {n: [json.loads(l)["ids"] for l in open(os.path.join(root, "tests", "golden", f"tokenizer_pre-{n}.jsonl"))]
               for n in PRE_TYPES}
    for alias, twin in PRE_TYPE_ALIASES.items():
        assert goldens[alias] == goldens[twin], f"{alias} should tokenize as {twin}"
    names = [n for n in PRE_TYPES if n not in PRE_TYPE_ALIASES]
    for i, a in enumerate(names):  # every pair of them differs on some case
        for b in names[i + 1:]:
            assert goldens[a] != goldens[b], f"the cases do not tell {a} from {b}"
    print(f"every pair of the {len(names)} pre-tokenizers differs on some of the "
          f"{len(cases) + len(PRE_TYPE_GOLDEN_CASES)} cases")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    ap.add_argument("--smollm2", help="SmolLM2-135M-Instruct.Q4_1.gguf (leave out to skip)")
    ap.add_argument("--smollm2-json", default="/work/models/smollm2-135m-tokenizer/tokenizer.json")
    ap.add_argument("--pre-types-only", action="store_true",
                    help="only the tokenizer.ggml.pre files and goldens (from the committed tiny-gpt2 vocabulary)")
    ap.add_argument("--families-only", action="store_true",
                    help="only the families' tokenizer.json files and goldens")
    args = ap.parse_args()
    corpus = read_corpus(args.root)
    if args.pre_types_only:
        gguf_pre_types(args.root, corpus)
        return
    if args.families_only:
        workdir = tempfile.mkdtemp()
        try:
            family_tokenizers(args.root, corpus, workdir)
        finally:
            shutil.rmtree(workdir)
        return
    tiny_gpt2(args.root, corpus)
    workdir = tempfile.mkdtemp()
    try:
        tiny_llama(args.root, corpus, workdir)
    finally:
        shutil.rmtree(workdir)
    gguf_pre_types(args.root, corpus)
    workdir = tempfile.mkdtemp()
    try:
        family_tokenizers(args.root, corpus, workdir)
    finally:
        shutil.rmtree(workdir)
    if args.smollm2:
        smollm2(args.root, corpus, args.smollm2, args.smollm2_json)


if __name__ == "__main__":
    main()
