#!/usr/bin/env python3
"""Per-type dequantisation goldens for tests/unit/formats/test_quants.c, from
gguf-py (llama.cpp's own Python package: gguf.quants.dequantize), an
implementation hydra did not write.

For every tensor type llama.cpp writes, a few blocks of bytes that exercise
every code path: random bits everywhere; scales (fp16 d, dmin, m; Q8_K's
float d; MXFP4's exponent; NVFP4's e4m3 scales) drawn over their whole finite range with +0, -0,
the smallest subnormal and +-65504 among them; for the IQ types every grid
index, every sign pattern and every sub-block scale; for the ternary types
every byte value. gguf-py decodes them and the script writes

  tests/golden/quants/<TYPE>.bin:
    "HQG1", then little-endian u32: ggml type number, block count, elements
    per block, bytes per block (the last two from gguf-py's GGML_QUANT_SIZES);
    the blocks' bytes; then the expected values as float32.

Q8_K has no dequantiser in gguf-py (llama.cpp uses it only for activations):
its expected values are d * q computed here with numpy (float32).

usage: python tests/golden/make_quant_golden.py [ROOT]   (needs: gguf numpy)
"""
import os
import struct
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES

SEED = 20250719

# Blocks per type: 32-element types 16, 256-element types 4, except where a
# grid needs more rows to hold every index (IQ1_* 2048 rows / 32 per block).
N_BLOCKS = {T.F32: 256, T.F16: 512, T.BF16: 512,
            T.Q4_0: 16, T.Q4_1: 16, T.Q5_0: 16, T.Q5_1: 16, T.Q8_0: 16, T.IQ4_NL: 16,
            T.MXFP4: 32, T.NVFP4: 32,
            T.Q2_K: 4, T.Q3_K: 4, T.Q4_K: 4, T.Q5_K: 4, T.Q6_K: 4, T.Q8_K: 4, T.IQ4_XS: 4,
            T.TQ1_0: 4, T.TQ2_0: 4,
            T.IQ2_XXS: 8, T.IQ2_XS: 16, T.IQ2_S: 32, T.IQ3_XXS: 4, T.IQ3_S: 8,
            T.IQ1_S: 64, T.IQ1_M: 64}

# Byte offsets of each type's fp16 scales inside a block (ggml-common.h).
F16_SCALES = {T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
              T.IQ4_NL: [0], T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2],
              T.Q5_K: [0, 2], T.Q6_K: [208], T.IQ4_XS: [0], T.TQ1_0: [52], T.TQ2_0: [64],
              T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0], T.IQ3_XXS: [0], T.IQ3_S: [0],
              T.IQ1_S: [0]}


def f16_scales(rng, n):
    """n finite fp16 bit patterns: the edge cases first, then every exponent
    (subnormals included) with random sign and mantissa."""
    edges = [0x0000, 0x8000, 0x0001, 0x8001, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00, 0x0400, 0x03FF]
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint32)
    exp = rng.integers(0, 31, size=n, dtype=np.uint32)  # 31 is inf/NaN: never
    bits = (bits & 0x83FF) | (exp << 10)
    k = min(n, len(edges))
    bits[:k] = edges[:k]
    return rng.permutation(bits).astype(np.uint16)


def put_u16(blocks, offset, values):
    blocks[:, offset:offset + 2] = np.asarray(values, dtype="<u2").reshape(-1, 1).view(np.uint8)


def spread(rng, n, values):
    """n draws, shuffled, that hold every one of `values` when n >= len(values)."""
    values = np.asarray(values)
    return rng.permutation(np.tile(values, -(-n // len(values)))[:n])


def fill_iq(qtype, blocks, rng):
    n = blocks.shape[0]
    if qtype == T.IQ2_XXS:  # per 32: 4 grid bytes, u32 of 4 x 7 sign bits + 4-bit scale
        grid = spread(rng, n * 32, np.arange(256)).reshape(n, 8, 4)
        signs = spread(rng, n * 32, np.arange(128)).reshape(n, 8, 4).astype(np.uint32)
        scale = spread(rng, n * 8, np.arange(16)).reshape(n, 8).astype(np.uint32)
        aux = signs[..., 0] | signs[..., 1] << 7 | signs[..., 2] << 14 | signs[..., 3] << 21
        aux |= scale << 28
        for ib in range(8):
            blocks[:, 2 + 8 * ib:6 + 8 * ib] = grid[:, ib].astype(np.uint8)
            blocks[:, 6 + 8 * ib:10 + 8 * ib] = aux[:, ib].astype("<u4").reshape(-1, 1).view(np.uint8)
    elif qtype == T.IQ2_XS:  # u16: 9-bit grid index, 7-bit sign index
        index = spread(rng, n * 32, np.arange(512)).astype(np.uint32)
        signs = spread(rng, n * 32, np.arange(128)).astype(np.uint32)
        q = (index | signs << 9).astype("<u2").reshape(n, 32)
        blocks[:, 2:66] = q.view(np.uint8)
    elif qtype == T.IQ2_S:  # 8 low index bits, 2 high bits in qh, sign bytes
        index = spread(rng, n * 32, np.arange(1024)).reshape(n, 32)
        blocks[:, 2:34] = index & 0xFF
        hi = (index >> 8).reshape(n, 8, 4)
        blocks[:, 66:74] = hi[..., 0] | hi[..., 1] << 2 | hi[..., 2] << 4 | hi[..., 3] << 6
        blocks[:, 34:66] = spread(rng, n * 32, np.arange(256)).reshape(n, 32)
    elif qtype == T.IQ3_XXS:  # 64 grid bytes; per 32: u32 of 4 x 7 sign bits + scale
        blocks[:, 2:66] = spread(rng, n * 64, np.arange(256)).reshape(n, 64)
        signs = spread(rng, n * 32, np.arange(128)).reshape(n, 8, 4).astype(np.uint32)
        scale = spread(rng, n * 8, np.arange(16)).reshape(n, 8).astype(np.uint32)
        aux = signs[..., 0] | signs[..., 1] << 7 | signs[..., 2] << 14 | signs[..., 3] << 21
        aux |= scale << 28
        blocks[:, 66:98] = aux.astype("<u4").view(np.uint8).reshape(n, 32)
    elif qtype == T.IQ3_S:  # 8 low index bits, 1 high bit in qh, sign bytes, nibble scales
        index = spread(rng, n * 64, np.arange(512)).reshape(n, 64)
        blocks[:, 2:66] = index & 0xFF
        blocks[:, 66:74] = np.packbits((index >> 8).astype(np.uint8), axis=-1, bitorder="little")
        blocks[:, 74:106] = spread(rng, n * 32, np.arange(256)).reshape(n, 32)
        blocks[:, 106:110] = spread(rng, n * 4, np.arange(256)).reshape(n, 4)
    elif qtype == T.IQ1_S:  # 8 low index bits; per 32 a u16: 4 x 3 high bits, scale, delta sign
        index = spread(rng, n * 32, np.arange(2048)).reshape(n, 8, 4)
        blocks[:, 2:34] = (index & 0xFF).reshape(n, 32)
        hi = (index >> 8).astype(np.uint32)
        top = spread(rng, n * 8, np.arange(16)).reshape(n, 8).astype(np.uint32)  # scale, sign
        qh = hi[..., 0] | hi[..., 1] << 3 | hi[..., 2] << 6 | hi[..., 3] << 9 | top << 12
        blocks[:, 34:50] = qh.astype("<u2").view(np.uint8).reshape(n, 16)
    elif qtype == T.IQ1_M:  # 8 low bits; qh nibbles: 3 high bits + delta sign; packed scales, d
        index = spread(rng, n * 32, np.arange(2048)).reshape(n, 32)
        blocks[:, 0:32] = index & 0xFF
        nib = (index >> 8) | spread(rng, n * 32, np.array([0, 8])).reshape(n, 32)
        blocks[:, 32:48] = (nib[:, 0::2] | nib[:, 1::2] << 4).astype(np.uint8)
        scales = spread(rng, n * 16, np.arange(8)).reshape(n, 4, 4).astype(np.uint32)
        sc = scales[..., 0] | scales[..., 1] << 3 | scales[..., 2] << 6 | scales[..., 3] << 9
        d = f16_scales(rng, n).astype(np.uint32)
        for i in range(4):  # nibble i of d in the top nibble of scale word i
            sc[:, i] |= (d >> (4 * i) & 0xF) << 12
        blocks[:, 48:56] = sc.astype("<u2").view(np.uint8).reshape(n, 8)


def make_blocks(qtype, rng):
    n = N_BLOCKS[qtype]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    blocks = rng.integers(0, 256, size=(n, type_size), dtype=np.uint8)
    if qtype in (T.F16, T.BF16, T.F32):
        return blocks  # every bit pattern: subnormals, +-0, inf and NaN among them
    for offset in F16_SCALES.get(qtype, []):
        put_u16(blocks, offset, f16_scales(rng, n))
    if qtype == T.Q8_K:
        d = (rng.standard_normal(n) * np.exp2(rng.integers(-60, 60, size=n))).astype(np.float32)
        d[:2] = [0.0, -0.0]
        blocks[:, 0:4] = d.astype("<f4").reshape(-1, 1).view(np.uint8)
    if qtype == T.MXFP4:  # e8m0 exponents whose products stay finite, 0 and 1 (subnormal d)
        blocks[:, 0] = spread(rng, n, np.array([0, 1, 2, 100, 127, 128, 200, 250]))
    if qtype == T.NVFP4:  # every e4m3 scale byte but those past 448 (0x7f reads as 0)
        blocks[:, 0:4] = spread(rng, n * 4, np.arange(128)).reshape(n, 4)
    if qtype in (T.TQ1_0, T.TQ2_0):  # every byte value through the ternary digits
        body = 52 if qtype == T.TQ1_0 else 64
        blocks[:, :body] = spread(rng, n * body, np.arange(256)).reshape(n, body)
    fill_iq(qtype, blocks, rng)
    return blocks


def expected_values(qtype, blocks):
    if qtype == T.Q8_K:  # not in gguf-py: x = d q, float32
        d = blocks[:, 0:4].copy().view("<f4").astype(np.float32)
        q = blocks[:, 4:260].view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    if qtype == T.F32:
        return blocks.reshape(-1).view("<f4").copy()
    with np.errstate(over="ignore", invalid="ignore"):
        return gguf.quants.dequantize(blocks.reshape(-1), qtype).astype(np.float32).reshape(-1)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    root = os.path.relpath(root)
    out_dir = os.path.join(root, "tests", "golden", "quants")
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for qtype in N_BLOCKS:
        rng = np.random.default_rng([SEED, int(qtype)])
        blocks = make_blocks(qtype, rng)
        want = expected_values(qtype, blocks)
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        assert want.dtype == np.float32 and want.size == blocks.shape[0] * block_size, qtype.name
        if qtype not in (T.F16, T.BF16, T.F32):
            assert np.isfinite(want).all(), qtype.name
        path = os.path.join(out_dir, f"{qtype.name}.bin")
        with open(path, "wb") as f:
            f.write(b"HQG1" + struct.pack("<4I", int(qtype), blocks.shape[0], block_size, type_size))
            f.write(blocks.tobytes())
            f.write(want.astype("<f4").tobytes())
        total += os.path.getsize(path)
        print(f"  {path}: {blocks.shape[0]} blocks, {os.path.getsize(path)} bytes")
    print(f"  total {total} bytes")


if __name__ == "__main__":
    main()
