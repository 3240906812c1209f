"""engine-mkmodel and engine-inspect against the gguf Python package (an independent reader and
writer): files we write read back correctly there, files it writes (single and split) inspect
identically here, and malformed files get one error line and no output."""
import os
import sys
import unittest

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

sys.path.insert(0, os.path.dirname(__file__))
from common import FIXTURES, INSPECT, inspect_json, mkmodel, run, tempdir  # noqa: E402

# Keys the reader synthesises or the writer adds itself.
SKIP_KEYS = {"GGUF.version", "GGUF.tensor_count", "GGUF.kv_count", "general.architecture",
             "general.alignment", "split.no", "split.count", "split.tensors.count"}


def rewrite_with_gguf(src, dst, split_max_tensors=0):
    """Copies every key and tensor of `src` into new file(s) written by gguf.GGUFWriter."""
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch, split_max_tensors=split_max_tensors)
    for name, field in reader.fields.items():
        if name in SKIP_KEYS:
            continue
        vtype = field.types[0]
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
    for t in reader.tensors:
        writer.add_tensor(t.name, t.data, raw_shape=t.data.shape, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def comparable(report):
    """An inspect report without the fields that name or size the file itself."""
    return {k: v for k, v in report.items() if k not in ("file", "file_bytes", "split_files")}


class OurFilesReadInGguf(unittest.TestCase):
    def test_reader_sees_our_tensors_and_values(self):
        with tempdir() as d:
            for arch, mix in (("llama", "f32"), ("qwen2", "q4_k_m"), ("qwen3", "q8_0"), ("llama", "bf16")):
                path = mkmodel(os.path.join(d, f"{arch}-{mix}.gguf"), "--arch", arch, "--type", mix)
                ours = inspect_json(path)
                reader = gguf.GGUFReader(path)
                self.assertEqual(reader.fields["general.architecture"].contents(), arch)
                self.assertEqual(len(reader.tensors), ours["n_tensors"])
                counts = {}
                for t in reader.tensors:
                    counts[t.tensor_type.name] = counts.get(t.tensor_type.name, 0) + 1
                self.assertEqual(counts, ours["tensor_types"])
                per_layer = {}
                for t in reader.tensors:
                    if t.name.startswith("blk."):
                        layer = int(t.name.split(".")[1])
                        per_layer[layer] = per_layer.get(layer, 0) + int(t.n_bytes)
                self.assertEqual([per_layer[i] for i in range(ours["n_layer"])],
                                 [layer["bytes"] for layer in ours["layers"]])
                # Values decode (with gguf's dequantizer) to the distribution mkmodel draws from:
                # uniform with variance 1/row_length for matrices, around 1 for norms.
                q = next(t for t in reader.tensors if t.name == "blk.1.attn_q.weight")
                w = gguf.quants.dequantize(q.data, q.tensor_type).astype(np.float64)
                self.assertEqual(w.shape, (ours["n_head"] * ours["head_dim"], ours["n_embd"]))
                self.assertAlmostEqual(w.var() * ours["n_embd"], 1.0, delta=0.15)
                norm = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight")
                self.assertAlmostEqual(float(np.mean(norm.data)), 1.0, delta=0.02)


class GgufFilesInspectIdentically(unittest.TestCase):
    def test_rewritten_single_and_split_files(self):
        with tempdir() as d:
            for arch, mix in (("qwen2", "q4_k_m"), ("llama", "q4_0"), ("qwen3", "f16")):
                ours = mkmodel(os.path.join(d, f"{arch}.gguf"), "--arch", arch, "--type", mix, "--layers", "4")
                theirs = os.path.join(d, f"{arch}-gguf.gguf")
                rewrite_with_gguf(ours, theirs)
                a, b = inspect_json(ours), inspect_json(theirs)
                self.assertEqual(comparable(a), comparable(b), arch)
                # Split by the gguf package itself: llama.cpp's naming and split.* keys.
                base = os.path.join(d, f"{arch}-split.gguf")
                rewrite_with_gguf(ours, base, split_max_tensors=10)
                parts = sorted(p for p in os.listdir(d) if p.startswith(f"{arch}-split-"))
                self.assertGreater(len(parts), 2, parts)
                c = inspect_json(os.path.join(d, parts[-1]))
                self.assertEqual(c["split_files"], len(parts))
                self.assertEqual(comparable(a), comparable(c), arch)

    def test_vocab_copied_from_a_real_tokenizer(self):
        vocab = os.path.join(FIXTURES, "vocab", "ggml-vocab-gpt-2.gguf")
        self.assertTrue(os.path.exists(vocab), f"fixture {vocab} not found (../shared/ beside the checkout)")
        src = gguf.GGUFReader(vocab)
        tokens = src.fields["tokenizer.ggml.tokens"]
        with tempdir() as d:
            path = mkmodel(os.path.join(d, "gpt2.gguf"), "--vocab", vocab, "--embd", "256", "--type", "f16")
            report = inspect_json(path)
            self.assertEqual(report["n_vocab"], len(tokens.data))
            self.assertEqual(report["tokenizer"]["model"], "gpt2")
            self.assertEqual(report["tokenizer"]["n_merges"], len(src.fields["tokenizer.ggml.merges"].data))
            ours = gguf.GGUFReader(path).fields["tokenizer.ggml.tokens"]
            self.assertEqual(ours.contents(), tokens.contents())


class MalformedFilesFailCleanly(unittest.TestCase):
    def test_one_line_on_stderr_nothing_on_stdout(self):
        with tempdir() as d:
            good = mkmodel(os.path.join(d, "good.gguf"))
            with open(good, "rb") as f:
                data = f.read()
            cases = {
                "truncated.gguf": data[: len(data) // 2],
                "magic.gguf": b"GGUX" + data[4:],
                "empty.gguf": b"",
            }
            for name, content in cases.items():
                path = os.path.join(d, name)
                with open(path, "wb") as f:
                    f.write(content)
                for flags in ([], ["--json"]):
                    r = run(INSPECT, *flags, path, check=False)
                    self.assertEqual(r.returncode, 1, name)
                    self.assertEqual(r.stdout, "", name)
                    lines = r.stderr.strip().splitlines()
                    self.assertEqual(len(lines), 1, r.stderr)
                    self.assertIn(path, lines[0])


if __name__ == "__main__":
    unittest.main()
