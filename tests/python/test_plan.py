"""engine-run --plan --json with layers left to the CPU: the prompt offload's bytes on the GPU that
multiplies their prompt batches and on the CPU, computed here from the file's tensor table (gguf
package) as docs/planner.md says they are counted; --no-prompt-offload frees them, and the GPU
then holds at least as many layers. engine-perplexity places layers with the same flags: split
over a simulated GPU and the CPU (stages that run the CPU's kernels) it gives the CPU's figure."""
import json
import os
import sys
import unittest

import gguf

sys.path.insert(0, os.path.dirname(__file__))
from common import ENGINE_RUN, mkmodel, run, tempdir  # noqa: E402

PERPLEXITY = os.environ.get("ENGINE_PERPLEXITY", "engine-perplexity")
CHUNK = 8 << 20
BATCH = 512


def aligned(n):
    return (n + 255) // 256 * 256


def offload_by_hand(path, first, last):
    """(GPU bytes, CPU bytes) of the offload for layers first..last: the largest matrix (Q8_0 rows
    as stored), the batch in fp16 at the widest input, one f32 buffer for the batch or a product,
    each 256-byte aligned; on the CPU two pinned chunks and that buffer's copy."""
    matrix = max_k = max_n = 0
    for t in gguf.GGUFReader(path).tensors:
        if not t.name.startswith("blk.") or len(t.shape) != 2:
            continue
        if first <= int(t.name.split(".")[1]) <= last:
            matrix = max(matrix, int(t.n_bytes))
            max_k = max(max_k, int(t.shape[0]))
            max_n = max(max_n, int(t.shape[1]))
    rows = 4 * BATCH * max(max_k, max_n)
    return aligned(matrix) + aligned(2 * BATCH * max_k) + aligned(rows), 2 * CHUNK + rows


class PlanWithCpuLayers(unittest.TestCase):
    def test_prompt_offload_bytes(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "m.gguf"), "--arch", "llama", "--layers", "8", "--embd", "512",
                            "--heads", "8", "--heads-kv", "4", "--head-dim", "64", "--ff", "1536", "--vocab", "4096",
                            "--type", "q8_0")
            args = [ENGINE_RUN, "-m", model, "--devices", "sim:550MiB", "--ctx", "1024", "--plan"]
            plan = json.loads(run(*args, "--json").stdout)
            gpu, cpu = plan["devices"]
            self.assertEqual(cpu["kind"], "cpu")
            self.assertIsNotNone(cpu["first_layer"], "the test needs layers on the CPU")
            self.assertIsNotNone(gpu["first_layer"], "the test needs layers on the GPU")
            self.assertEqual(plan["prompt_offload_gpu"], "sim0")
            want_gpu, want_cpu = offload_by_hand(model, cpu["first_layer"], cpu["last_layer"])
            self.assertEqual(gpu["offload_bytes"], want_gpu)
            self.assertEqual(cpu["offload_bytes"], want_cpu)
            for dev in plan["devices"]:
                self.assertEqual(dev["needed_bytes"], sum(dev[k] for k in ("weight_bytes", "kv_bytes", "compute_bytes",
                                                                           "offload_bytes", "reserve_bytes")))
            self.assertIn("multiplied on sim0", run(*args).stdout)

            off = json.loads(run(*args, "--json", "--no-prompt-offload").stdout)
            self.assertIsNone(off["prompt_offload_gpu"])
            self.assertEqual([dev["offload_bytes"] for dev in off["devices"]], [0, 0])
            self.assertGreaterEqual(off["n_layer_gpu"], plan["n_layer_gpu"])
            self.assertNotIn("multiplied on", run(*args, "--no-prompt-offload").stdout)


class PerplexityPlacement(unittest.TestCase):
    def test_split_gives_the_cpu_figure(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "m.gguf"), "--arch", "llama", "--layers", "4", "--type", "q8_0")
            text = os.path.join(d, "t.txt")
            with open(text, "w") as f:
                f.write(" ".join(f"word{i % 97} and{i % 13}" for i in range(1500)))
            base = [PERPLEXITY, "-m", model, "-f", text, "-c", "64", "--chunks", "3", "-t", "2", "--json"]
            cpu = run(*base)
            split = run(*base, "--devices", "sim:8GiB", "--split", "2")
            self.assertEqual(json.loads(split.stdout), json.loads(cpu.stdout))
            self.assertRegex(split.stderr, r"\nsim0 +2-3 \+out ")
            self.assertIn("chunks of 64, 2 stages (transport host, micro-batch 64)", split.stderr)
            # Micro-batches of 16 through the two stages: the same figure up to the rounding of
            # other kernel shapes.
            micro = run(*base, "--devices", "sim:8GiB", "--split", "2", "--ubatch", "16", "--transport", "host")
            self.assertIn("chunks of 64, 2 stages (transport host, micro-batch 16)", micro.stderr)
            self.assertAlmostEqual(json.loads(micro.stdout)["ppl"], json.loads(cpu.stdout)["ppl"],
                                   delta=1e-4 * json.loads(cpu.stdout)["ppl"])
            self.assertIn("0/5 layers", cpu.stderr)  # no GPU: every layer on the CPU
            self.assertIn("chunks of 64, 1 stage\n", cpu.stderr)


if __name__ == "__main__":
    unittest.main()
