"""Writes small seed inputs for the GGUF fuzzer with the gguf package (an independent writer):
tiny valid models of each architecture, a file with every metadata value type, and byte-level BPE
vocabularies.
Usage: make_seeds.py OUT_DIR"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T


def tiny_model(path, arch, qtype=T.F32, embd=32, vocab=8):
    w = gguf.GGUFWriter(path, arch)
    heads, kv, hd, ff = 2, 1, embd // 2, 2 * embd
    w.add_uint32(f"{arch}.block_count", 1)
    w.add_uint32(f"{arch}.context_length", 64)
    w.add_uint32(f"{arch}.embedding_length", embd)
    w.add_uint32(f"{arch}.feed_forward_length", ff)
    w.add_uint32(f"{arch}.attention.head_count", heads)
    w.add_uint32(f"{arch}.attention.head_count_kv", kv)
    w.add_float32(f"{arch}.rope.freq_base", 10000.0)
    w.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_string("tokenizer.ggml.model", "llama")
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(vocab)])
    w.add_array("tokenizer.ggml.scores", [float(-i) for i in range(vocab)])
    w.add_array("tokenizer.ggml.token_type", [1] * vocab)
    w.add_uint32("tokenizer.ggml.bos_token_id", 1)
    w.add_uint32("tokenizer.ggml.eos_token_id", 2)

    def mat(name, rows, cols):
        x = np.random.default_rng(0).standard_normal((rows, cols)).astype(np.float32)
        if qtype == T.F32:
            w.add_tensor(name, x)
        else:
            q = gguf.quants.quantize(x, qtype)
            w.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)

    def vec(name, n):
        w.add_tensor(name, np.ones(n, dtype=np.float32))

    mat("token_embd.weight", vocab, embd)
    vec("output_norm.weight", embd)
    mat("output.weight", vocab, embd)
    vec("blk.0.attn_norm.weight", embd)
    mat("blk.0.attn_q.weight", heads * hd, embd)
    mat("blk.0.attn_k.weight", kv * hd, embd)
    mat("blk.0.attn_v.weight", kv * hd, embd)
    mat("blk.0.attn_output.weight", embd, heads * hd)
    if arch == "qwen2":
        for n, size in (("q", heads * hd), ("k", kv * hd), ("v", kv * hd)):
            vec(f"blk.0.attn_{n}.bias", size)
    if arch == "qwen3":
        vec("blk.0.attn_q_norm.weight", hd)
        vec("blk.0.attn_k_norm.weight", hd)
    vec("blk.0.ffn_norm.weight", embd)
    mat("blk.0.ffn_gate.weight", ff, embd)
    mat("blk.0.ffn_up.weight", ff, embd)
    mat("blk.0.ffn_down.weight", embd, ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def all_value_types(path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_uint8("u8", 1)
    w.add_int8("i8", -1)
    w.add_uint16("u16", 2)
    w.add_int16("i16", -2)
    w.add_uint32("u32", 3)
    w.add_int32("i32", -3)
    w.add_float32("f32", 0.5)
    w.add_bool("bool", True)
    w.add_string("string", "text")
    w.add_uint64("u64", 4)
    w.add_int64("i64", -4)
    w.add_float64("f64", 0.25)
    w.add_array("strings", ["a", "bc", ""])
    w.add_array("ints", [1, 2, 3])
    w.add_array("floats", [1.0, 2.0])
    w.add_tensor("x", np.zeros(32, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def byte_chars():
    """GPT-2's printable stand-ins for the 256 byte values."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    out, extra = {}, 256
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(extra)
            extra += 1
    return [out[b] for b in range(256)]


def gpt2_vocab(path, pre):
    w = gguf.GGUFWriter(path, "llama")
    tokens = byte_chars() + ["\u0120w", "or", "\u0120wor", "ld", "<|im_start|>"]
    w.add_string("tokenizer.ggml.model", "gpt2")
    w.add_string("tokenizer.ggml.pre", pre)
    w.add_array("tokenizer.ggml.tokens", tokens)
    w.add_array("tokenizer.ggml.token_type", [1] * (len(tokens) - 1) + [3])
    w.add_array("tokenizer.ggml.merges", ["\u0120 w", "o r", "\u0120w or", "l d"])
    w.add_uint32("tokenizer.ggml.eos_token_id", len(tokens) - 1)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main(out):
    os.makedirs(out, exist_ok=True)
    tiny_model(os.path.join(out, "llama-f32.gguf"), "llama")
    tiny_model(os.path.join(out, "qwen2-q8_0.gguf"), "qwen2", T.Q8_0)
    tiny_model(os.path.join(out, "qwen3-f16.gguf"), "qwen3", T.F16)
    all_value_types(os.path.join(out, "value-types.gguf"))
    gpt2_vocab(os.path.join(out, "vocab-qwen2.gguf"), "qwen2")
    gpt2_vocab(os.path.join(out, "vocab-llama-bpe.gguf"), "llama-bpe")


if __name__ == "__main__":
    main(sys.argv[1])
