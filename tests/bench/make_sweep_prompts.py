#!/usr/bin/env python3
"""Writes tests/bench/sweep_prompts.json: the 16 factual-recall prompts of the
ablation-sweep benchmark (tests/bench/sweep.sh), with their SmolLM2 token ids.
With --count N (issue 24, item 4: a sweep with few duplicate draws) it writes N
prompts taken evenly spaced from tests/data/factual_prompts.json (375 prompts,
nine relations) instead, e.g. tests/bench/sweep_prompts_256.json.

The ids come from Hugging Face transformers' tokenizer built from the GGUF's
own metadata (not from hydra). No BOS: the GGUF says add_bos_token false, and
add_special_tokens=False makes that explicit. The prompts hold no digits, so
transformers' plain GPT-2 split of the GGUF vocabulary and SmolLM2's own
"smollm" pre-tokenizer (digits split one by one) give the same ids.

usage: python tests/bench/make_sweep_prompts.py [MODEL.gguf] [--out FILE]
       python tests/bench/make_sweep_prompts.py [MODEL.gguf] --count 256 \
           --out tests/bench/sweep_prompts_256.json
"""
import argparse
import json
import os

from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_MODEL = os.path.join(ROOT, "models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf")

# (subject, prompt): subject + relation, the answer is the next token.
PROMPTS = [
    ("The Eiffel Tower", "The Eiffel Tower is located in the city of"),
    ("Japan", "The capital of Japan is the city of"),
    ("Michael Jordan", "The sport that Michael Jordan played is"),
    ("The Great Wall", "The Great Wall is in the country of"),
    ("The Colosseum", "The Colosseum is located in the city of"),
    ("The Statue of Liberty", "The Statue of Liberty is located in the city of"),
    ("France", "The capital of France is the city of"),
    ("Brazil", "The official language of Brazil is"),
    ("The Taj Mahal", "The Taj Mahal is located in the country of"),
    ("the iPhone", "The company that makes the iPhone is"),
    ("the United Kingdom", "The currency of the United Kingdom is the"),
    ("Albert Einstein", "Albert Einstein was born in the country of"),
    ("Italy", "The capital of Italy is the city of"),
    ("Jimi Hendrix", "The instrument that Jimi Hendrix played was the"),
    ("Big Ben", "The clock tower Big Ben is located in the city of"),
    ("Romeo and Juliet", "The play Romeo and Juliet was written by William"),
]
FACTUAL = os.path.join(ROOT, "tests/data/factual_prompts.json")


def factual_prompts(count):
    """count (subject, prompt) pairs, evenly spaced over factual_prompts.json."""
    with open(FACTUAL) as f:
        pool = json.load(f)["prompts"]
    if not 0 < count <= len(pool):
        raise SystemExit(f"--count {count}: must be 1 to {len(pool)} (the prompts in {FACTUAL})")
    picked = [pool[i * len(pool) // count] for i in range(count)]
    return [(p["subject"], p["text"]) for p in picked]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?", default=DEFAULT_MODEL)
    ap.add_argument("--out", default=os.path.join(HERE, "sweep_prompts.json"))
    ap.add_argument("--count", type=int, default=0,
                    help="N prompts from tests/data/factual_prompts.json (default: the 16 above)")
    a = ap.parse_args()
    pairs = factual_prompts(a.count) if a.count else PROMPTS
    tok = AutoTokenizer.from_pretrained(os.path.dirname(a.model),
                                        gguf_file=os.path.basename(a.model))
    prompts = []
    for subject, text in pairs:
        assert not any(ch.isdigit() for ch in text), text
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text, (text, tok.decode(ids))
        prompts.append({"text": text, "subject": subject, "ids": ids})
    doc = {
        "model": os.path.relpath(a.model, ROOT),
        "tokenizer": "transformers AutoTokenizer from the GGUF metadata, "
                     "add_special_tokens=False (no BOS)",
        "prompts": prompts,
    }
    with open(a.out, "w") as f:
        f.write("{\n")
        f.write(f'  "model": {json.dumps(doc["model"])},\n')
        f.write(f'  "tokenizer": {json.dumps(doc["tokenizer"])},\n')
        f.write('  "prompts": [\n')
        f.write(",\n".join("    " + json.dumps(p) for p in prompts))
        f.write("\n  ]\n}\n")
    print(f"wrote {os.path.relpath(a.out)}: {len(prompts)} prompts, "
          f"{min(len(p['ids']) for p in prompts)}-{max(len(p['ids']) for p in prompts)} tokens")


if __name__ == "__main__":
    main()
