"""The engine's hand-written pre-tokenizers against the regexes they implement, run by the
`regex` package (an independent engine with \\p{L} and \\p{N}), on fixture text and on random
strings drawn from ASCII, whitespace, Latin, Vietnamese, CJK and emoji."""
import os
import subprocess
import sys
import unittest

import numpy as np
import regex

sys.path.insert(0, os.path.dirname(__file__))
from common import FIXTURES  # noqa: E402

TOOL = os.environ.get("ENGINE_PRETOKENIZE_TOOL", "engine-pretokenize-tool")
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
          r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
         r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def split(patterns, text):
    """llama.cpp's semantics: each regex splits every piece further; unmatched text stays."""
    pieces = [text]
    for p in patterns:
        out = []
        for piece in pieces:
            pos = 0
            for m in regex.finditer(p, piece):
                if m.start() > pos:
                    out.append(piece[pos:m.start()])
                out.append(m.group())
                pos = m.end()
            if pos < len(piece):
                out.append(piece[pos:])
        pieces = [x for x in out if x]
    return pieces


CASES = {
    "gpt2": [GPT2],
    "llama-bpe": [LLAMA3],
    "qwen2": [QWEN2],
    "deepseek-r1-qwen": [QWEN2],
    "smollm": [r"\p{N}", GPT2],
}

ALPHABET = (list("abcXYZ019 '\t\n\r.,!?-_()") + ["  ", "\n\n", "'s", "'LL", "'Re"] +
            list("éüßñçÅ") + list("Việt") + list("我想在工作") + ["😁", "🚀", "\u200d", "\u00a0", "\u3000",
                                                                 "٣", "Ⅻ", "½"])


def random_texts(rng, n):
    return ["".join(rng.choice(ALPHABET, size=int(rng.integers(0, 40)))) for _ in range(n)]


class PreTokenizersMatchRegex(unittest.TestCase):
    def test_all(self):
        rng = np.random.default_rng()
        fixture = os.path.join(FIXTURES, "vocab", "ggml-vocab-gpt-2.gguf.inp")
        with open(fixture, encoding="utf-8") as f:
            texts = f.read().split("\n__ggml_vocab_test__\n")
        texts += random_texts(rng, 3000)
        data = "\0".join(texts).encode("utf-8")
        for name, patterns in CASES.items():
            r = subprocess.run([TOOL, name], input=data, capture_output=True, check=True)
            records = r.stdout.split(b"\0")
            self.assertEqual(len(records), len(texts), name)
            for text, rec in zip(texts, records):
                ours = [p.decode("utf-8") for p in rec.split(b"\1")] if rec else []
                self.assertEqual(ours, split(patterns, text), f"{name}: {text!r}")


if __name__ == "__main__":
    unittest.main()
