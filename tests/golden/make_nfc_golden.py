#!/usr/bin/env python3
"""Writes tests/golden/nfc.txt, the NFC golden of tests/unit/util/test_unicode_nfc.c,
with Python's unicodedata.normalize("NFC", ...), an implementation hydra did not
write.

One case per line, "input<TAB>output" in UTF-8, output "=" when NFC leaves the
input as it is:
  - every code point with a decomposition mapping (canonical or compatibility)
    in unicodedata's database, alone;
  - each one with a canonical decomposition, then 1 to 3 combining marks drawn
    from a seed, in scrambled order, and its own decomposition likewise;
  - Hangul: conjoining jamo L V, L V T, syllables LV + T, and syllables;
  - every line of tests/data/tokenizer_corpus.txt, and its NFD.
Lines holding a line break or tab are left out.

Version: /usr/bin/python3's unicodedata is Unicode 14.0; the C tables are
generated from Debian's Unicode 15.0 data. Normalization stability makes NFC
of text assigned in 14.0 the same under 15.0, so the cases use only code points
assigned in unicodedata's version (the 15.0 additions, e.g. Kawi's and Nag
Mundari's marks, are not checked against Python).

usage: /usr/bin/python3 tests/golden/make_nfc_golden.py [ROOT]
"""
import json
import os
import random
import sys
import unicodedata

SEED = 20250307


def assigned(cp):
    return unicodedata.category(chr(cp)) not in ("Cn", "Cs")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    rng = random.Random(SEED)
    nfc = lambda s: unicodedata.normalize("NFC", s)  # noqa: E731
    cps = [cp for cp in range(0x110000) if assigned(cp)]
    marks = [cp for cp in cps if unicodedata.combining(chr(cp))]
    cases = []
    for cp in cps:
        d = unicodedata.decomposition(chr(cp))
        if not d:
            continue
        c = chr(cp)
        cases.append(c)
        if d.startswith("<"):
            continue
        for base in (c, unicodedata.normalize("NFD", c)):
            seq = list(base) + [chr(rng.choice(marks)) for _ in range(rng.randint(1, 3))]
            head, tail = seq[:1], seq[1:]
            rng.shuffle(tail)
            cases.append("".join(head + tail))
    L = [chr(0x1100 + i) for i in range(19)]
    V = [chr(0x1161 + i) for i in range(21)]
    T = [chr(0x11A8 + i) for i in range(27)]
    for _ in range(400):
        lv = rng.choice(L) + rng.choice(V)
        cases.append(lv)
        cases.append(lv + rng.choice(T))
        s = chr(0xAC00 + rng.randrange(11172))
        cases.append(s + rng.choice(T))
        cases.append(s + rng.choice(V) + chr(rng.choice(marks)))
    with open(os.path.join(root, "tests", "data", "tokenizer_corpus.txt"), encoding="utf-8") as f:
        for line in f:
            text = json.loads(line)
            cases.append(text)
            cases.append(unicodedata.normalize("NFD", text))
    out = os.path.join(root, "tests", "golden", "nfc.txt")
    n = 0
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# unicodedata {unicodedata.unidata_version}, seed {SEED}\n")
        for c in cases:
            if any(ch in c for ch in "\n\r\t\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029") or not c:
                continue
            r = nfc(c)
            f.write(f"{c}\t{'=' if r == c else r}\n")
            n += 1
    print(f"wrote {out}: {n} cases, unicodedata {unicodedata.unidata_version}, "
          f"{os.path.getsize(out)} bytes")


if __name__ == "__main__":
    main()
