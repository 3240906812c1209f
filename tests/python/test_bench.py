"""engine-bench on the CPU: every combination gets a row, a combination that cannot run says why
and the others still run, and every output format parses with the same stable columns. Generation
rows carry the bytes a token reads, computed here from the file's tensor table (gguf package), the
bandwidth that implies and the fraction of the memory roofline."""
import csv
import io
import json
import os
import sys
import unittest

import gguf

sys.path.insert(0, os.path.dirname(__file__))
from common import mkmodel, run, tempdir  # noqa: E402

BENCH = os.environ.get("ENGINE_BENCH", "engine-bench")
COLUMNS = ["model", "model_bytes", "types", "split", "devices", "cpu_isa", "threads", "transport", "kv_type", "layers", "test",
           "depth", "draft", "draft_max", "acceptance", "repetitions", "tokens_per_s", "stddev", "load_s", "peak_bytes", "gpu_memory", "bytes_per_token",
           "gb_per_s", "roofline_fraction", "error"]


def decode_bytes(path, depth, n_gen, kv_bytes_per_value=2):
    """Bytes one generated token reads on average: every tensor but the embedding table, one
    embedding row, and K and V (f16: 2 bytes a value; q8_0: 34 bytes per 32) of every layer up to
    the token's position."""
    r = gguf.GGUFReader(path)
    arch = r.fields["general.architecture"].contents()
    n_layer = r.fields[f"{arch}.block_count"].contents()
    n_embd = r.fields[f"{arch}.embedding_length"].contents()
    n_head = r.fields[f"{arch}.attention.head_count"].contents()
    n_head_kv = r.fields[f"{arch}.attention.head_count_kv"].contents()
    head_dim = r.fields[f"{arch}.attention.key_length"].contents() if f"{arch}.attention.key_length" in r.fields \
        else n_embd // n_head
    names = {t.name for t in r.tensors}
    assert "output.weight" in names  # untied: the embedding table is not read whole
    weights = sum(int(t.n_bytes) for t in r.tensors if t.name != "token_embd.weight")
    embd = next(t for t in r.tensors if t.name == "token_embd.weight")
    row = int(embd.n_bytes) // int(embd.shape[1])
    positions = depth + (n_gen + 1) / 2
    return weights + row + int(n_layer * positions * 2 * n_head_kv * head_dim * kv_bytes_per_value)


class BenchOnCpu(unittest.TestCase):
    def test_speculative_rows(self):
        # A generation row per draft length (0: without the draft), prompt rows once; the model as
        # its own draft (f32: a batch's sums as a single step's, to within ties) keeps most drafts.
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--preset", "tiny", "--type", "f32")
            rows = json.loads(run(BENCH, "-m", model, "--model-draft", model, "--draft-max", "0,3",
                                  "--draft-p-min", "0", "-p", "8", "-n", "16", "-r", "1", "-o", "json").stdout)
            self.assertEqual([(r["test"], r["draft_max"]) for r in rows], [("pp8", 0), ("tg16", 0), ("tg16", 3)])
            for r in rows:
                self.assertEqual(list(r.keys()), COLUMNS)
                self.assertEqual(r["error"], "", r)
                self.assertGreater(r["tokens_per_s"], 0)
            plain, spec = rows[1], rows[2]
            self.assertEqual((plain["draft"], plain["acceptance"]), ("", 0))
            self.assertGreater(plain["bytes_per_token"], 0)
            self.assertEqual(spec["draft"], "tiny.gguf")
            self.assertGreater(spec["acceptance"], 0.5)
            self.assertEqual((spec["bytes_per_token"], spec["gb_per_s"], spec["roofline_fraction"]), (0, 0, 0))
            table = run(BENCH, "-m", model, "--md", model, "--draft-max", "2", "--draft-p-min", "0", "-p", "0",
                        "-n", "4", "-r", "1").stdout
            self.assertIn("| tiny.gguf x2 (", table)
            # A draft of another tokenizer: that model's rows say so, and nothing runs for them.
            other = mkmodel(os.path.join(d, "think.gguf"), "--preset", "tiny", "--arch", "qwen2",
                            "--chat-template", "qwq")
            rows = json.loads(run(BENCH, "-m", model, "--md", other, "-p", "0", "-n", "4", "-r", "1",
                                  "-o", "json").stdout)
            self.assertEqual(len(rows), 2)
            for r in rows:
                self.assertIn("draft model", r["error"])

    def test_rows_and_formats(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--arch", "qwen2")
            args = [BENCH, "-m", model, "--split", "auto,cpu,30,34", "-p", "16", "-n", "4",
                    "-d", "0,8", "-r", "1"]
            rows = json.loads(run(*args, "-o", "json").stdout)
            self.assertEqual(len(rows), 3 * 2 * 2)  # splits x tests x depths
            for r in rows:
                self.assertEqual(list(r.keys()), COLUMNS)
            ok = [r for r in rows if not r["error"]]
            bad = [r for r in rows if r["error"]]
            self.assertEqual(len(ok), 8)
            self.assertEqual({r["split"] for r in bad}, {"30,34"})
            for r in bad:
                self.assertIn("no GPU", r["error"])
            for r in ok:
                self.assertGreater(r["tokens_per_s"], 0)
                self.assertIn(r["test"], ("pp16", "tg4"))
                if r["test"] == "tg4":
                    self.assertEqual(r["bytes_per_token"], decode_bytes(model, r["depth"], 4))
                    self.assertAlmostEqual(r["gb_per_s"], r["bytes_per_token"] * r["tokens_per_s"] / 1e9,
                                           delta=1e-6 * r["gb_per_s"])
                    self.assertGreater(r["roofline_fraction"], 0)
                else:
                    self.assertEqual((r["bytes_per_token"], r["gb_per_s"], r["roofline_fraction"]), (0, 0, 0))
                self.assertEqual(r["layers"], "cpu:0-1")
                self.assertGreater(r["model_bytes"], 0)
                self.assertEqual(r["gpu_memory"], "")  # no GPU stage
            self.assertEqual({r["depth"] for r in ok}, {0, 8})
            self.assertEqual(len({r["cpu_isa"] for r in rows}), 1)
            self.assertIn(rows[0]["cpu_isa"], ("avx512-vnni", "avx2", "generic"))
            self.assertEqual(len({r["threads"] for r in rows}), 1)
            self.assertGreaterEqual(rows[0]["threads"], 1)
            self.assertLessEqual(rows[0]["threads"], os.cpu_count())
            self.assertEqual({r["threads"] for r in json.loads(run(*args, "-t", "3", "-o", "json").stdout)}, {3})
            table = list(csv.DictReader(io.StringIO(run(*args, "-o", "csv").stdout)))
            self.assertEqual(len(table), len(rows))
            self.assertEqual(list(table[0].keys()), COLUMNS)
            lines = run(*args, "-o", "jsonl").stdout.splitlines()
            self.assertEqual([json.loads(x)["test"] for x in lines], [r["test"] for r in rows])
            md = run(*args).stdout
            self.assertIn("cannot run:", md)
            self.assertEqual(md.count("\n"), 2 + len(rows))

    def test_tiny_sizes_run(self):
        """Prompts and generations shorter than the warm-up: the context is sized for the rows
        (here 3 + 1 positions), and every row runs."""
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--arch", "llama")
            rows = json.loads(run(BENCH, "-m", model, "--split", "cpu", "-p", "1,3", "-n", "2", "-r", "1",
                                  "-o", "json").stdout)
            self.assertEqual([r["test"] for r in rows], ["pp1", "pp3", "tg2"])
            for r in rows:
                self.assertEqual(r["error"], "", r)
                self.assertGreater(r["tokens_per_s"], 0, r)

    def test_rows_name_the_cpu_kernels_that_ran(self):
        """ENGINE_CPU_ISA=generic (every x86-64 CPU runs it) shows in every row; an unknown set is
        one line and no rows."""
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--arch", "llama")
            args = [BENCH, "-m", model, "--split", "cpu", "-p", "8", "-n", "4", "-r", "1", "-o", "json"]
            rows = json.loads(run(*args, env={"ENGINE_CPU_ISA": "generic"}).stdout)
            self.assertEqual([r["cpu_isa"] for r in rows], ["generic", "generic"])
            bad = run(*args, env={"ENGINE_CPU_ISA": "neon"}, check=False)
            self.assertNotEqual(bad.returncode, 0)
            self.assertEqual(bad.stdout, "")
            self.assertIn("ENGINE_CPU_ISA=neon: unknown instruction set", bad.stderr)

    def test_kv_types_are_an_axis(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--arch", "llama")
            rows = json.loads(run(BENCH, "-m", model, "--split", "cpu", "--kv-type", "f16,q8_0", "-p", "8",
                                  "-n", "4", "-d", "40", "-r", "1", "-o", "json").stdout)
            self.assertEqual([(r["kv_type"], r["test"]) for r in rows],
                             [("f16", "pp8"), ("f16", "tg4"), ("q8_0", "pp8"), ("q8_0", "tg4")])
            for r in rows:
                self.assertEqual(r["error"], "")
                self.assertGreater(r["tokens_per_s"], 0)
            tg = {r["kv_type"]: r["bytes_per_token"] for r in rows if r["test"] == "tg4"}
            self.assertEqual(tg["f16"], decode_bytes(model, 40, 4))
            self.assertEqual(tg["q8_0"], decode_bytes(model, 40, 4, 34 / 32))
            bad = run(BENCH, "-m", model, "--kv-type", "q4", "-p", "8", "-n", "0", check=False)
            self.assertNotEqual(bad.returncode, 0)
            self.assertIn("--kv-type: 'q4'", bad.stderr)

    def test_simulated_devices_run_as_stages(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "tiny.gguf"), "--arch", "llama")
            rows = json.loads(run(BENCH, "-m", model, "--devices", "sim:1GiB,sim:1GiB", "--split", "1/1",
                                  "--transport", "auto,nccl", "-p", "8", "-n", "2", "-r", "1",
                                  "--ubatch", "3", "-o", "json").stdout)
            self.assertEqual(len(rows), 2 * 2)  # transports x tests
            ran = [r for r in rows if not r["error"]]
            self.assertEqual(len(ran), 2)
            for r in ran:
                self.assertEqual(r["transport"], "host")
                self.assertEqual(r["layers"], "0-0|1-1|cpu:-")
                self.assertGreater(r["tokens_per_s"], 0)
            for r in rows:
                if r["error"]:
                    self.assertIn("transport nccl: no boundary between two GPU stages", r["error"])


if __name__ == "__main__":
    unittest.main()
