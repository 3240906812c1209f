"""The tokenizers against llama.cpp's (through the llama-cpp-python package) on the two real
vocabularies of ../shared/fixtures/vocab (SentencePiece and byte-level BPE): random texts built
from words, numbers, contractions, whitespace runs, accents, combining marks, CJK, emoji, control
token strings and random code points, tokenized with control-token parsing off and on (no BOS),
must give llama.cpp's ids exactly; the ids, and random id sequences, must detokenize to
llama.cpp's text exactly (control tokens not rendered): llama_detokenize's for SentencePiece, the
pieces llama.cpp streams for byte-level BPE (whose llama_detokenize also drops the spaces before
punctuation and contractions, Hugging Face's clean_up_tokenization_spaces, which we do not). The fixtures' own
vectors (Tokenizer.*FixtureExact) are llama.cpp's test inputs; this reaches the mixtures between.

Exits 77 (ctest: skipped, with the reason) where the package is not installed (scripts/test installs it)."""
import ctypes
import os
import random
import subprocess
import sys
import unicodedata

sys.path.insert(0, os.path.dirname(__file__))
from common import FIXTURES, llama_cpp_or_skip  # noqa: E402

llama_cpp = llama_cpp_or_skip()

TOOL = os.environ.get("ENGINE_TOKENIZE_TOOL", "engine-tokenize-tool")
PIECES = ["hello", " world", "  ", "\n", "\n\n", "\t", " \n ", "123", "4567", "1,000", "3.14", "'s", "'t", "'re",
          "'ll", "'VE", "don't", "Hello", "HELLO", "ümlaut", "café", "naïve", "日本語", "中文字", "한국어", "🙂",
          "👍🏽", "🇺🇸", "e\u0301", "ñ", "—", "…", "«»", "$", "%", "#!", "<s>", "</s>", "<|endoftext|>", "<unk>",
          " ", "   x", "a  b", "    ", "\r\n", "x\u00a0y", "\u2581", "ab", "z", "Ǆ", "ß", "ﬁ", "İ", "\u200b", "<",
          ">", "|", "<0x41>", "a\u0000b"]


def random_text(rng):
    parts = []
    for _ in range(rng.randint(1, 16)):
        if rng.random() < 0.15:
            # Any code point but the surrogates that this Python's Unicode (14.0 on Python 3.11)
            # already assigns: the letter and number tables of llama.cpp (its unicode-data.cpp)
            # and ours (unicode_tables.inc, 15.1) may be of different Unicode versions, whose new
            # letters the regexes split differently.
            cp = 0
            while unicodedata.category(chr(cp)) in ("Cn", "Cs", "Cc"):
                cp = rng.choice([rng.randint(0x20, 0x7F), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                                 rng.randint(0xE000, 0xFFFD), rng.randint(0x10000, 0x10FFFF)])
            parts.append(chr(cp))
        else:
            parts.append(rng.choice(PIECES))
    return "".join(parts).replace("\u0000", "")


def tool(model, *args, data):
    return subprocess.run([TOOL, model, *args], input=data, capture_output=True, check=True).stdout


def llama_detokenize(vocab, ids):
    arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
    buf = ctypes.create_string_buffer(1 << 16)
    n = llama_cpp.llama_detokenize(vocab, arr, len(ids), buf, len(buf), False, False)
    assert n >= 0, "llama_detokenize's buffer is too small"
    return buf.raw[:n]


def llama_pieces(vocab, ids):
    """The tokens' pieces as llama.cpp prints them while it generates (llama_token_to_piece),
    concatenated."""
    out = b""
    buf = ctypes.create_string_buffer(256)
    for t in ids:
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, False)
        assert n >= 0, "llama_token_to_piece's buffer is too small"
        out += buf.raw[:n]
    return out


def main():
    seed = int.from_bytes(os.urandom(4), "little")
    rng = random.Random(seed)
    failures = []
    for name in ("ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf"):
        model = os.path.join(FIXTURES, "vocab", name)
        llm = llama_cpp.Llama(model_path=model, vocab_only=True, verbose=False)
        vocab = llama_cpp.llama_model_get_vocab(llm.model)
        texts = [random_text(rng) for _ in range(600)]
        data = b"\0".join(t.encode() for t in texts)
        all_ids = []
        for special in (False, True):
            ours = tool(model, "tokenize", "1" if special else "0", data=data).decode().split("\n")[:len(texts)]
            for text, line in zip(texts, ours):
                got = [int(x) for x in line.split()]
                want = llm.tokenize(text.encode(), add_bos=False, special=special)
                if got != want:
                    failures.append(f"{name}, special {special}: {text!r}: ours {got[:12]}, llama.cpp's {want[:12]}")
                all_ids.append(want)
        n_vocab = llm.n_vocab()
        all_ids += [[rng.randrange(n_vocab) for _ in range(rng.randint(1, 12))] for _ in range(300)]
        texts_back = tool(model, "detokenize", data="\n".join(" ".join(map(str, ids)) for ids in all_ids).encode() + b"\n")
        ours = [bytes.fromhex(line) for line in texts_back.decode().split("\n")[:len(all_ids)]]
        for ids, got in zip(all_ids, ours):
            # SentencePiece: llama_detokenize itself. Byte-level BPE: llama_detokenize also runs
            # Hugging Face's clean_up_tokenization_spaces on GPT-2's vocabulary (" 's" -> "'s", " ,"
            # -> ","), which loses spaces the text had: ours keeps every byte, so it is held to the
            # pieces llama.cpp streams instead.
            want = llama_detokenize(vocab, ids) if "spm" in name else llama_pieces(vocab, ids)
            if got != want:
                failures.append(f"{name}: detokenize {ids[:12]}: ours {got[:60]!r}, llama.cpp's {want[:60]!r}")
        llm.close()
        print(f"{name}: {2 * len(texts)} tokenizations and {len(all_ids)} detokenizations compared")
    for f in failures[:10]:
        print(f)
    if failures:
        sys.exit(f"{len(failures)} differences from llama.cpp {llama_cpp.__version__} (seed {seed})")
    print(f"the same ids and texts as llama.cpp {llama_cpp.__version__} (seed {seed})")


if __name__ == "__main__":
    main()
