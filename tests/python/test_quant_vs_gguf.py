"""The engine's block formats against the gguf Python package's own dequantizer.

Dequantization: fresh random blocks of every supported type (random bytes, finite fp16 scales)
must dequantize to the same values in both. Quantization: the engine's quantizers must produce
blocks that gguf decodes to exactly what the engine decodes, close to the input.
"""
import os
import sys
import unittest

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES, quants

sys.path.insert(0, os.path.dirname(__file__))
from common import QUANT_TOOL, run, tempdir  # noqa: E402

# Byte offsets of fp16 scale fields inside one block (they must not be inf/nan).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q5_0: [0], T.Q8_0: [0], T.Q4_1: [0, 2], T.Q5_1: [0, 2],
    T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q2_K: [80, 82], T.Q3_K: [108], T.Q6_K: [208],
    T.IQ4_NL: [0], T.IQ4_XS: [0], T.IQ3_XXS: [0], T.IQ3_S: [0], T.IQ2_XXS: [0], T.IQ2_XS: [0], T.IQ2_S: [0],
    T.IQ1_S: [0], T.IQ1_M: [],  # IQ1_M's d: the top nibbles of its four scale words (random_blocks)
    T.TQ1_0: [52], T.TQ2_0: [64],
}
SUPPORTED = [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
             T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS, T.IQ3_XXS, T.IQ3_S,
             T.IQ2_XXS, T.IQ2_XS, T.IQ2_S, T.IQ1_S, T.IQ1_M, T.TQ1_0, T.TQ2_0]
# Relative RMS round-trip error bounds of the engine's quantizers on Gaussian data.
QUANTIZE_BOUNDS = {T.F32: 0.0, T.F16: 5e-4, T.BF16: 4e-3, T.Q8_0: 0.012, T.Q6_K: 0.04,
                   T.Q5_K: 0.06, T.Q4_K: 0.13, T.Q3_K: 0.25, T.Q2_K: 0.5, T.Q5_1: 0.06, T.Q5_0: 0.07,
                   T.Q4_1: 0.13, T.Q4_0: 0.15, T.IQ4_NL: 0.12, T.IQ4_XS: 0.12,
                   T.IQ3_S: 0.25, T.IQ3_XXS: 0.32, T.IQ2_XXS: 0.42, T.IQ2_XS: 0.36, T.IQ2_S: 0.31,
                   T.IQ1_S: 0.53, T.IQ1_M: 0.48, T.TQ1_0: 0.85, T.TQ2_0: 0.85}


def random_blocks(qtype, n_blocks, rng):
    block_size, block_bytes = GGML_QUANT_SIZES[qtype]
    if qtype == T.F32:
        return rng.uniform(-4, 4, n_blocks).astype(np.float32).view(np.uint8)
    if qtype == T.F16:
        return rng.uniform(-4, 4, n_blocks).astype(np.float16).view(np.uint8)
    if qtype == T.BF16:
        f = rng.uniform(-4, 4, n_blocks).astype(np.float32)
        return (f.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, block_bytes), dtype=np.uint8)
    for at in FP16_FIELDS[qtype]:
        scales = rng.uniform(-0.05, 0.05, n_blocks).astype(np.float16)
        raw[:, at:at + 2] = scales.view(np.uint8).reshape(n_blocks, 2)
    if qtype == T.IQ1_M:  # nibble w of d in the top nibble of scale word w (bytes 48 + 2w, 49 + 2w)
        d = rng.uniform(-0.05, 0.05, n_blocks).astype(np.float16).view(np.uint16)
        for w in range(4):
            top = ((d >> (4 * w)) & 15).astype(np.uint8) << 4
            raw[:, 49 + 2 * w] = (raw[:, 49 + 2 * w] & 0x0F) | top
    return raw.reshape(-1)


def engine(op, qtype, data, d):
    src, dst = os.path.join(d, "in.bin"), os.path.join(d, "out.bin")
    data.tofile(src)
    run(QUANT_TOOL, op, qtype.name, src, dst)
    return np.fromfile(dst, dtype=np.float32 if op == "dequantize" else np.uint8)


class DequantizeMatchesGguf(unittest.TestCase):
    def test_every_supported_type(self):
        rng = np.random.default_rng()
        with tempdir() as d:
            for qtype in SUPPORTED:
                block_size, block_bytes = GGML_QUANT_SIZES[qtype]
                n_blocks = 4096 if block_size == 256 else 8192
                raw = random_blocks(qtype, n_blocks, rng)
                ours = engine("dequantize", qtype, raw, d)
                ref = quants.dequantize(raw.reshape(-1, block_bytes if block_size > 1 else raw.size), qtype)
                ref = np.asarray(ref, dtype=np.float64).reshape(-1)
                self.assertEqual(ours.size, ref.size, qtype.name)
                self.assertTrue(np.all(np.isfinite(ours)), qtype.name)
                # Same formulas in float32; allow for a different order of the two multiplies.
                err = np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-30)
                self.assertLessEqual(err, 1e-6, f"{qtype.name}: relative error {err:.3g}")


class QuantizersProduceValidBlocks(unittest.TestCase):
    def test_quantizable_types(self):
        rng = np.random.default_rng()
        with tempdir() as d:
            for qtype, bound in QUANTIZE_BOUNDS.items():
                x = (rng.standard_normal(256 * 512) * rng.uniform(0.01, 3.0)).astype(np.float32)
                blocks = engine("quantize", qtype, x, d)
                block_size, block_bytes = GGML_QUANT_SIZES[qtype]
                self.assertEqual(blocks.size, x.size // block_size * block_bytes, qtype.name)
                ours = engine("dequantize", qtype, blocks, d).astype(np.float64)
                shaped = blocks.reshape(-1, block_bytes) if block_size > 1 else blocks
                ref = np.asarray(quants.dequantize(shaped, qtype), dtype=np.float64).reshape(-1)
                agree = np.linalg.norm(ours - ref) / np.linalg.norm(ref)
                self.assertLessEqual(agree, 1e-6, f"{qtype.name}: engine and gguf decode differently")
                err = np.linalg.norm(ref - x) / np.linalg.norm(x)
                self.assertLessEqual(err, bound, f"{qtype.name}: round-trip error {err:.4f}")


class TernaryQuantizersAreGgufs(unittest.TestCase):
    """TQ1_0 and TQ2_0 have one reference quantizer (llama.cpp's, which gguf's repeats): the
    engine's writes the same bytes."""

    def test_same_bytes(self):
        rng = np.random.default_rng()
        with tempdir() as d:
            for qtype in (T.TQ1_0, T.TQ2_0):
                x = (rng.standard_normal(256 * 256) * rng.uniform(0.01, 3.0)).astype(np.float32)
                x[:256] = np.repeat(np.float32([0.5, -0.5, 1.0, 0.0]), 64)  # ties at half the scale
                ours = engine("quantize", qtype, x, d)
                theirs = np.asarray(quants.quantize(x.reshape(-1, 256), qtype), dtype=np.uint8).reshape(-1)
                self.assertTrue(np.array_equal(ours, theirs), qtype.name)


if __name__ == "__main__":
    unittest.main()
