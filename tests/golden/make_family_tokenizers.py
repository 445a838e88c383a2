#!/usr/bin/env python3
"""Writes tests/data/tokenizers/<family>/tokenizer.json and
tests/golden/tokenizer_family-<family>.jsonl for the tokenizer.json shapes the
model families ship (issue 18 item 4), each built here with Hugging Face
`tokenizers` (no hub downloads) from the family's published normalizer,
pre-tokenizer, model options, post-processor and decoder, over a vocabulary
trained here; the golden is `tokenizers`' own encoding of the multilingual
corpus (tests/data/tokenizer_corpus.txt) plus the family's extra cases.

  llama3   Llama 3: Split(Llama 3's expression) + ByteLevel, ignore_merges,
           <|begin_of_text|> before the text.
  tekken   Mistral's tekken (NeMo, Pixtral) as transformers' TikTokenConverter
           writes it: its case-run split + ByteLevel, ignore_merges.
  olmo2    OLMo 2 (dolma2, cl100k-style): the same split, merges applied to
           every word (no ignore_merges), nothing added.
  pythia   GPT-NeoX / Pythia (transformers' GPTNeoXTokenizer): NFC + GPT-2's
           ByteLevel, and runs of spaces as added (non-special) tokens.
  falcon   Falcon: Punctuation(Contiguous), ByteLevel with GPT-2's
           expression, then Digits and a three-digit Split that run on the
           byte-level spelling (as tokenizers applies them after ByteLevel).
  bloom    BLOOM: Split(" ?[^(\\s|[.,!?…。，、।۔،])]+", a class holding a
           class) + ByteLevel without an expression.
  mistral  Mistral 7B v0.1 (and Llama 2: transformers' LlamaConverter with
           legacy=True): normalizer Prepend("▁") + Replace(" ", "▁"), no
           pre-tokenizer, sentencepiece BPE with byte fallback, <s> first.
  phi3     Phi-3: Mistral's shape, with chat tokens that strip the spaces
           after them (rstrip), as Phi-3's added_tokens are.

Also tests/data/gguf/tokenizer_gemma.gguf, Gemma's vocabulary as llama.cpp
writes it (see gemma_gguf).

The byte-level ones share one vocabulary trained without any split, so that
its merges cross the boundaries where their pre-tokenizers differ.

  opt      OPT: GPT-2's ByteLevel BPE with </s> before the text.
  phi2     Phi-2 (CodeGen's vocabulary): GPT-2's ByteLevel BPE with runs of
           spaces and tabs as added, non-special tokens.

Covered elsewhere: GPT-2 (tiny-gpt2), Granite and
StarCoder (digits then ByteLevel: tokenizer_pre-command-r), StableLM 2 and
Qwen2 (tokenizer_family-qwen2, tokenizer_pre-stablelm2), Gemma
(tokenizer_family-gemma).

usage: python tests/golden/make_family_tokenizers.py [--root ROOT]
       (needs: tokenizers transformers sentencepiece)
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
from tokenizers import processors, trainers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_golden import (LLAMA3_RE, SEED, TEKKEN_RE, read_corpus, train_sentencepiece,  # noqa: E402
                                   training_text, whole_word_tokens, write_golden)

EXTRA_CASES = {
    "pythia": ["two  spaces,   three,    four and        eight", "  \t  tab in spaces  "],
    "phi2": ["def f(x):\n\t\treturn  x\n        pass\t\t\t\tend", " " * 40 + "deep"],
    "falcon": ["1234567 + 89 = 1234656; x²³ ¼½¾ вв 100,000.00",
               "(a)--b...c!?\"quoted\" #tag @user 3.14159"],
    "bloom": ["(parens) and [brackets] | pipes, commas. dots… 。，、 ।۔، end",
              "a.b,c!d?e"],
    "phi3": ["<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n4<|end|><|endoftext|>",
             "<|user|>   spaced   <|end|>  \n <|assistant|> x"],
}


def byte_level_vocab(corpus, specials):
    trained = Tokenizer(models.BPE())
    trained.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    trainer = trainers.BpeTrainer(vocab_size=1200, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    cases = [c for extra in EXTRA_CASES.values() for c in extra]
    trained.train_from_iterator(training_text(corpus + cases, SEED + 3), trainer=trainer)
    model = json.loads(trained.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return model["vocab"], merges


def byte_level_families(corpus):
    specials = ["<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>", "<|padding|>", ">>TITLE<<",
                ">>ABSTRACT<<", "<unk>", "<s>", "</s>", "<pad>"]
    vocab, merges = byte_level_vocab(corpus, specials)
    made = {}

    def base(ignore_merges=False, pre=None):
        words = vocab
        if ignore_merges:  # words only ignore_merges makes one token (see whole_word_tokens)
            extra = whole_word_tokens(pre, vocab, merges, corpus)
            words = dict(vocab, **{piece: len(vocab) + i for i, piece in enumerate(extra)})
        tok = Tokenizer(models.BPE(vocab=words, merges=merges, ignore_merges=ignore_merges))
        tok.decoder = decoders.ByteLevel()
        return tok

    def split_bytes(expr):
        return pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(expr), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])

    # Llama 3 (meta-llama/Meta-Llama-3-8B tokenizer.json).
    tok = base(ignore_merges=True, pre=split_bytes(LLAMA3_RE))
    tok.pre_tokenizer = split_bytes(LLAMA3_RE)
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
        processors.TemplateProcessing(
            single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B:1",
            special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])])
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    made["llama3"] = tok

    # Mistral's tekken (Mistral NeMo, Pixtral) as transformers'
    # TikTokenConverter writes it: its split, ignore_merges, nothing added.
    tok = base(ignore_merges=True, pre=split_bytes(TEKKEN_RE))
    tok.pre_tokenizer = split_bytes(TEKKEN_RE)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    made["tekken"] = tok

    # OLMo 2 (allenai/OLMo-2-1124-7B: cl100k's expression, no ignore_merges).
    tok = base()
    tok.pre_tokenizer = split_bytes(LLAMA3_RE)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    made["olmo2"] = tok

    # Pythia (EleutherAI/pythia-*: transformers' GPTNeoXTokenizer, and the
    # runs of spaces its tokenizer.json adds as non-special tokens).
    from transformers import GPTNeoXTokenizer
    tf_tok = GPTNeoXTokenizer(vocab=vocab, merges=merges)
    tf_tok.add_tokens([AddedToken(" " * n, normalized=True, special=False) for n in (8, 4, 3, 2)])
    made["pythia"] = tf_tok

    # Falcon (tiiuae/falcon-7b tokenizer.json).
    tok = base()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Punctuation(behavior="contiguous"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
        pre_tokenizers.Digits(individual_digits=False),
        pre_tokenizers.Split(Regex("[0-9][0-9][0-9]"), behavior="isolated", invert=False)])
    made["falcon"] = tok

    # OPT (facebook/opt-*: GPT-2's ByteLevel BPE, </s> before the text).
    tok = base()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B:1", special_tokens=[("</s>", vocab["</s>"])])
    made["opt"] = tok

    # Phi-2 (microsoft/phi-2: CodeGen's GPT-2 BPE with runs of spaces and tabs
    # as added, non-special tokens).
    tok = base()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_tokens([AddedToken(" " * n, normalized=False, special=False) for n in (31, 8, 4, 3, 2)] +
                   [AddedToken("\t" * n, normalized=False, special=False) for n in (4, 2)])
    made["phi2"] = tok

    # BLOOM (bigscience/bloom tokenizer.json).
    tok = base()
    tok.pre_tokenizer = split_bytes(" ?[^(\\s|[.,!?…。，、।۔،])]+")
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=False)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=False)
    made["bloom"] = tok
    for family in ("llama3", "tekken", "olmo2", "falcon", "bloom", "opt", "phi2"):
        made[family].add_special_tokens(specials)
    return made


def sentencepiece_families(corpus, workdir):
    from transformers.tokenization_utils_base import generate_merges

    sp = train_sentencepiece(corpus, workdir)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    vocab = {p: i for i, p in enumerate(pieces)}
    merges = generate_merges(vocab, dict(zip(pieces, scores)))
    made = {}
    for family in ("mistral", "phi3"):
        # transformers' LlamaConverter with legacy=True (the shape of Mistral
        # 7B v0.1's, Llama 2's and Phi-3's tokenizer.json).
        tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                                   byte_fallback=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                         decoders.Strip(content=" ", left=1)])
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B:1", special_tokens=[("<s>", vocab["<s>"])])
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ("<unk>", "<s>", "</s>")])
        made[family] = tok
    made["phi3"].add_special_tokens([AddedToken("<|endoftext|>", normalized=False, special=True)] + [
        AddedToken(t, rstrip=True, normalized=False, special=True)
        for t in ("<|assistant|>", "<|end|>", "<|user|>", "<|system|>")])
    return made


def gemma_gguf(root, corpus, workdir):
    """tests/data/gguf/tokenizer_gemma.gguf: the vocabulary of
    tests/data/tokenizers/gemma (make_tokenizer_golden.py's family_tokenizers)
    as llama.cpp's converter writes a Gemma vocabulary: tokenizer.ggml.model
    "llama", tokens, scores and types, no merges, add_space_prefix false;
    BOS not added, as that tokenizer.json adds none. Its golden is
    tokenizer_family-gemma.jsonl (tokenizers on that tokenizer.json)."""
    import gguf

    sp = train_sentencepiece(corpus, workdir)
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    scores = [sp.get_score(i) for i in range(sp.get_piece_size())]
    pieces[:3] = ["<pad>", "<eos>", "<bos>"]
    with open(os.path.join(root, "tests", "data", "tokenizers", "gemma", "tokenizer.json"), encoding="utf-8") as f:
        published = json.load(f)
    vocab = published["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    assert tokens[:len(pieces)] == pieces, "the sentencepiece vocabulary is not the committed Gemma one"
    types = []
    for i, t in enumerate(tokens):
        if t == "<unk>":
            types.append(gguf.TokenType.UNKNOWN)
        elif t in ("<pad>", "<eos>", "<bos>", "<mask>"):
            types.append(gguf.TokenType.CONTROL)
        elif i < len(pieces) and sp.is_byte(i):
            types.append(gguf.TokenType.BYTE)
        else:
            types.append(gguf.TokenType.NORMAL)
    path = os.path.join(root, "tests", "data", "gguf", "tokenizer_gemma.gguf")
    w = gguf.GGUFWriter(path, arch="gemma")
    w.add_context_length(128)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(96)
    w.add_head_count(4)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores + [0.0] * (len(tokens) - len(pieces)))
    w.add_token_types(types)
    w.add_add_space_prefix(False)
    w.add_bos_token_id(vocab["<bos>"])
    w.add_eos_token_id(vocab["<eos>"])
    w.add_unk_token_id(vocab["<unk>"])
    w.add_pad_token_id(vocab["<pad>"])
    w.add_add_bos_token(False)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", path)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.dirname(os.path.dirname(here)))
    args = ap.parse_args()
    corpus = read_corpus(args.root)
    workdir = tempfile.mkdtemp()
    try:
        made = byte_level_families(corpus)
        made.update(sentencepiece_families(corpus, workdir))
        gemma_gguf(args.root, corpus, workdir)
    finally:
        shutil.rmtree(workdir)
    goldens = {}
    for family, tok in made.items():
        backend = getattr(tok, "backend_tokenizer", tok)
        path = os.path.join(args.root, "tests", "data", "tokenizers", family, "tokenizer.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        backend.save(path)
        print("wrote", path)
        saved = Tokenizer.from_file(path)
        cases = corpus + EXTRA_CASES.get(family, [])
        if backend is not tok:  # a transformers tokenizer: it must agree with its backend
            for text in cases:
                a, b = tok(text)["input_ids"], saved.encode(text).ids
                if a != b:
                    sys.exit(f"{family}: transformers and tokenizers disagree on {text!r}: {a} vs {b}")
        golden = os.path.join(args.root, "tests", "golden", f"tokenizer_family-{family}.jsonl")
        write_golden(golden, saved, cases)
        goldens[family] = [saved.encode(t).ids for t in corpus]
    names = list(goldens)
    for i, a in enumerate(names):  # every pair differs on the shared corpus
        for b in names[i + 1:]:
            assert goldens[a] != goldens[b], f"the corpus does not tell {a} from {b}"


if __name__ == "__main__":
    main()
