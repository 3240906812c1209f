"""The engine's CPU forward pass against the independent NumPy reference (reference_forward.py)
on small engine-mkmodel models of each architecture:
  F32 weights: next-token logits of a 16-token prompt within relative error 1e-4;
  F16 and Q8_0: greedy tokens identical for 32 steps (f32 KV cache; prompts are drawn until the
  reference's best and second-best logits differ by more than 1e-4 at every step, 30x the
  engine's measured logit error, so a tie broken by rounding cannot fail the test);
  the f16 KV cache: logits within 5e-3 of the reference (its rounding error is about 2e-3);
  Q4_K_M: top-1 agreement with the reference. The engine multiplies 4- and 6-bit weights with
  activations quantized to 8 bits (as llama.cpp does), which puts about 2% of the logits' spread
  of noise on them; a random model's logits are flat, so at a few percent of positions the best
  two are closer than that and either may win. Asserted: at least 95% agreement where the
  reference's best two logits differ by more than 10% of their spread (decided positions), at
  least 90% everywhere, over three models and 64 positions each; a wrong kernel agrees at ~0.2%.
and batched prompt evaluation against token-by-token evaluation (within 1e-4 relative); a run split
into three pipeline stages on simulated devices (micro-batches of 3) gives the reference's greedy
tokens too.
Each instruction set's kernels (ENGINE_CPU_ISA caps the run-time choice), end to end: F32 logits
within 1e-4, Q4_K_M and Q3_K_M (8-bit panels and rows, 12-bit panels) within 5e-2 (measured
1.2-2.4e-2: the activations' 8- and 12-bit rounding) as one prompt batch and token by token."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import ENGINE_RUN, FORWARD_TOOL, mkmodel, run, tempdir  # noqa: E402

PERPLEXITY = os.environ.get("ENGINE_PERPLEXITY", "engine-perplexity")
TOKENIZE = os.environ.get("ENGINE_TOKENIZE", "engine-tokenize")
from reference_forward import Reference  # noqa: E402

ARCHS = ("llama", "qwen2", "qwen3")
SHAPE = ("--layers", "2", "--embd", "256", "--heads", "4", "--heads-kv", "2", "--head-dim", "64",
         "--ff", "512", "--vocab", "512")


def engine_logits(path, ids, mode="batched", kv="f32", env=None):
    with tempdir() as d:
        out = os.path.join(d, "logits.f32")
        run(FORWARD_TOOL, path, kv, mode, out, ",".join(map(str, ids)), env=env)
        return np.fromfile(out, dtype=np.float32).astype(np.float64)


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


class ForwardMatchesReference(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng()
        self.dir = tempdir()
        self.d = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def model(self, arch, mix):
        return mkmodel(os.path.join(self.d, f"{arch}-{mix}.gguf"), "--arch", arch, "--type", mix,
                       "--seed", str(int(self.rng.integers(1, 1 << 30))), *SHAPE)

    def prompt(self, n):
        return [int(t) for t in self.rng.integers(0, 512, n)]

    def tie_free_greedy(self, ref, steps):
        """An 8-token prompt whose `steps` reference greedy tokens never hinge on a gap of 1e-4 or less
        between the best two logits, with those tokens."""
        for _ in range(20):
            ids = self.prompt(8)
            want, gap = ref.greedy(ids, steps)
            if gap > 1e-4:
                break
        self.assertGreater(gap, 1e-4, "no prompt without a near-tie in 20 draws")
        return ids, want

    def test_f32_logits(self):
        for arch in ARCHS:
            path, ids = self.model(arch, "f32"), self.prompt(16)
            ref = Reference(path).logits(ids)[-1]
            ours = engine_logits(path, ids)
            self.assertEqual(ours.shape, ref.shape)
            self.assertLessEqual(rel(ours, ref), 1e-4, arch)

    def test_greedy_f16_and_q8_0(self):
        # Exact paths only: Q8_0's prompt batches meet 8-bit activations in the AVX-512 VNNI panels
        # (as every quantized type's, and as llama.cpp's Q8_0 throughout), so its prompt goes a
        # token at a time here (--batch 1), through the float rows its decode steps take.
        for arch in ARCHS:
            for mix in ("f16", "q8_0"):
                path = self.model(arch, mix)
                ref = Reference(path)
                ids, want = self.tie_free_greedy(ref, 32)
                batch = ["--batch", "1"] if mix == "q8_0" else []
                out = run(ENGINE_RUN, "--model", path, "--prompt-ids", ",".join(map(str, ids)),
                          "--n-predict", "32", "--greedy", "--kv-type", "f32", "--json", *batch).stdout
                got = __import__("json").loads(out)["tokens"]
                self.assertEqual(got, want, f"{arch} {mix}")

    def test_f16_kv_cache_logits(self):
        for arch in ARCHS:
            path, ids = self.model(arch, "q8_0"), self.prompt(32)
            ref = Reference(path).logits(ids)
            ours = engine_logits(path, ids, mode="each", kv="f16").reshape(len(ids), -1)
            self.assertLessEqual(np.abs(ours - ref).max() / ref.std(), 5e-3, arch)

    def test_q4_k_m_top1_agreement(self):
        same, decided = [], []
        for arch in ARCHS:
            path, ids = self.model(arch, "q4_k_m"), self.prompt(64)
            ref = Reference(path).logits(ids)
            ours = engine_logits(path, ids, mode="each", kv="f16").reshape(len(ids), -1)
            top2 = np.sort(ref, axis=1)[:, -2:]
            same += list(np.argmax(ours, axis=1) == np.argmax(ref, axis=1))
            decided += list(top2[:, 1] - top2[:, 0] > 0.1 * ref.std(axis=1))
        same, decided = np.array(same), np.array(decided)
        print(f"Q4_K_M top-1 agreement: {same.mean():.3f} of {same.size} positions, "
              f"{same[decided].mean():.3f} of {decided.sum()} decided ones", file=sys.stderr)
        self.assertGreaterEqual(same[decided].mean(), 0.95)
        self.assertGreaterEqual(same.mean(), 0.90)

    def test_perplexity_matches_reference(self):
        # llama.cpp's definition: chunks of n tokens from an empty cache, the first replaced by
        # BOS, the second half of each scored by the logits one position earlier.
        path, n = self.model("llama", "f32"), 32
        text = " ".join(f"word{i % 17} and {i}" for i in range(60))
        with tempdir() as d:
            f = os.path.join(d, "text.txt")
            with open(f, "w") as fh:
                fh.write(text)
            ours = __import__("json").loads(run(PERPLEXITY, "-m", path, "-f", f, "-c", str(n),
                                                "--kv-type", "f32", "--json").stdout)
        ids = [int(t) for t in run(TOKENIZE, "--model", path, "--text", text).stdout.split()]
        ref, nll = Reference(path), []
        for c in range(len(ids) // n):
            chunk = ids[c * n:(c + 1) * n]
            chunk[0] = 1  # BOS
            logits = ref.logits(chunk)
            for j in range(n // 2, n - 1):
                row = logits[j]
                lse = row.max() + np.log(np.exp(row - row.max()).sum())
                nll.append(lse - row[ids[c * n + j + 1]])
        self.assertEqual(ours["scored_tokens"], len(nll))
        self.assertLessEqual(abs(ours["ppl"] / np.exp(np.mean(nll)) - 1), 1e-4)

    def test_split_stages_greedy_matches_reference(self):
        for arch in ("llama", "qwen2"):
            path = mkmodel(os.path.join(self.d, f"{arch}-split.gguf"), "--arch", arch, "--type", "f16",
                           "--seed", str(int(self.rng.integers(1, 1 << 30))),
                           *SHAPE[:1], "4", *SHAPE[2:])
            ref = Reference(path)
            ids, want = self.tie_free_greedy(ref, 16)
            out = run(ENGINE_RUN, "--model", path, "--prompt-ids", ",".join(map(str, ids)),
                      "--n-predict", "16", "--greedy", "--kv-type", "f32", "--json",
                      "--devices", "sim:1GiB,sim:1GiB,sim:1GiB", "--split", "1,2,1", "--ubatch", "3").stdout
            self.assertEqual(__import__("json").loads(out)["tokens"], want, arch)

    def test_batched_equals_token_by_token(self):
        for arch in ARCHS:  # f16: float activations in prompt batches and decode steps alike
            path, ids = self.model(arch, "f16"), self.prompt(40)
            batched = engine_logits(path, ids, "batched")
            each = engine_logits(path, ids, "each").reshape(len(ids), -1)[-1]
            self.assertLessEqual(rel(batched, each), 1e-4, arch)


class EveryInstructionSet(unittest.TestCase):
    """The CPU kernels exist per instruction set (generic x86-64, AVX2, AVX-512 VNNI) and a machine
    runs the best it has; ENGINE_CPU_ISA runs a lesser one, so each is checked here end to end."""
    ISAS = ("generic", "avx2", "avx512")

    def test_each_against_reference(self):
        rng = np.random.default_rng()
        with tempdir() as d:
            for mix, bound in (("f32", 1e-4), ("q4_k_m", 5e-2), ("q3_k_m", 5e-2), ("iq4_xs", 5e-2), ("iq4_nl", 5e-2),
                               ("iq3_xxs", 5e-2), ("iq3_m", 5e-2), ("iq2_xxs", 5e-2), ("iq2_xs", 5e-2), ("iq2_m", 5e-2),
                               ("iq1_s", 5e-2), ("iq1_m", 5e-2), ("tq1_0", 5e-2), ("tq2_0", 5e-2)):
                path = mkmodel(os.path.join(d, f"{mix}.gguf"), "--arch", "qwen3", "--type", mix,
                               "--seed", str(int(rng.integers(1, 1 << 30))), *SHAPE)
                ids = [int(t) for t in rng.integers(0, 512, 24)]
                ref = Reference(path).logits(ids)
                for isa in self.ISAS:
                    env = {"ENGINE_CPU_ISA": isa}
                    probe = run(FORWARD_TOOL, path, "f32", "batched", os.path.join(d, "probe"), "1", env=env,
                                check=False)
                    if "this CPU lacks" in probe.stderr:
                        print(f"{isa}: not on this CPU, not checked", file=sys.stderr)
                        continue
                    for mode in ("all", "each"):
                        ours = engine_logits(path, ids, mode, env=env).reshape(len(ids), -1)
                        err = rel(ours, ref)
                        print(f"{mix} {isa} {mode}: {err:.2e}", file=sys.stderr)
                        self.assertLessEqual(err, bound, f"{mix} {isa} {mode}")

    def test_unknown_name_is_one_line_and_no_output(self):
        with tempdir() as d:
            path = mkmodel(os.path.join(d, "m.gguf"), "--arch", "llama", *SHAPE)
            out = os.path.join(d, "logits.f32")
            r = run(FORWARD_TOOL, path, "f32", "batched", out, "1,2", env={"ENGINE_CPU_ISA": "sse9"}, check=False)
            self.assertEqual(r.returncode, 1)
            self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
            self.assertIn("ENGINE_CPU_ISA=sse9: unknown instruction set", r.stderr)
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main()
