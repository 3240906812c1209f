"""The engine's CPU forward pass against llama.cpp's (through the llama-cpp-python package) on the
same engine-mkmodel files: the logits after every token of a 48-token prompt, evaluated token by
token (decode rows) and as one prompt batch (tiles and panels), f32 KV caches on both sides, for
llama, qwen2 and qwen3 and each weight type. Where the NumPy reference
(test_forward_vs_numpy.py) is our own reading of the architectures, this is the de-facto one's:
RoPE mode and scaling, biases, q/k norms, GQA, the head, and how each quantized type is read.

Bounds (relative L2 error of all the logits; measured on 2026-12-02 with llama.cpp 0.3.36 in
brackets): F32 1e-5 [7e-7: the same sums in another order]; F16 5e-3 [7e-4: llama.cpp rounds the
activations of an F16 product to fp16, we keep f32]; BF16 3e-2 [6e-3: likewise to bf16]; the
quantized types 6e-2 [Q8_0 and Q4_0..Q5_1 1.8-2.2e-2; the K-quant mixes token by token 1e-3 to
1.8e-2, as one batch 2.4-3.5e-2 when our batches took 12-bit activations for Q2_K, Q3_K and Q6_K,
1e-7 to 2.1e-2 (two runs) since they take 8 bits per 256 values as llama.cpp does (2026-12-07): both sides
quantize activations, llama.cpp in its own blocks (or for Q8_0 only it); the ternary mixes, every
matrix but the head and token_embd ternary, token by token 1.7e-7 to 2e-2, as one batch 3.6-4.6e-2
while our panels quantized activations per 32 values (a bound of 8e-2 then), 1.3e-3 to 1.8e-2
since they take 256 as llama.cpp's do (three runs, AVX-512 and AVX2)]; and the same top token wherever llama.cpp's best two logits are a
tenth of the row's spread and eight times the row's rms difference between the runners apart
(random models' logits are flat: elsewhere [90-100% agree] the noise may swap them). A wrong RoPE mode, a missing bias or norm, or a misread block puts the
error near 1.

Exits 77 (ctest: skipped, with the reason) where the package is not installed (scripts/test installs it)."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import FORWARD_TOOL, llama_cpp_or_skip, mkmodel, tempdir  # noqa: E402

llama_cpp = llama_cpp_or_skip()

SHAPE = ("--layers", "3", "--embd", "512", "--heads", "8", "--heads-kv", "2", "--head-dim", "64",
         "--ff", "1024", "--vocab", "1000")
BOUNDS = {"f32": 1e-5, "f16": 5e-3, "bf16": 3e-2, "q8_0": 6e-2, "q4_0": 6e-2, "q4_1": 6e-2, "q5_0": 6e-2,
          "q5_1": 6e-2, "q2_k": 6e-2, "q3_k_m": 6e-2, "q4_k_m": 6e-2, "q5_k_m": 6e-2, "q6_k": 6e-2,
          "iq4_nl": 6e-2, "iq4_xs": 6e-2, "iq3_xxs": 6e-2, "iq3_m": 6e-2,
          "iq2_xxs": 6e-2, "iq2_xs": 6e-2, "iq2_m": 6e-2, "iq1_s": 6e-2, "iq1_m": 6e-2,
          "tq1_0": 6e-2, "tq2_0": 6e-2}


def engine_logits(path, ids, d, mode):
    out = os.path.join(d, "logits.f32")
    subprocess.run([FORWARD_TOOL, path, "f32", mode, out, ",".join(map(str, ids))], check=True,
                   capture_output=True)
    return np.fromfile(out, dtype=np.float32).reshape(len(ids), -1).astype(np.float64)


def llama_logits(path, ids):
    llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_batch=128, logits_all=True, n_threads=2,
                          type_k=0, type_v=0, verbose=False)  # GGML_TYPE_F32 caches
    llm.eval(ids)
    scores = np.array(llm.scores[:len(ids)], dtype=np.float64)
    llm.close()
    return scores


def main():
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    failures = []
    with tempdir() as d:
        for arch in ("llama", "qwen2", "qwen3"):
            for mix, bound in BOUNDS.items():
                path = mkmodel(os.path.join(d, f"{arch}-{mix}.gguf"), "--arch", arch, "--type", mix,
                               "--seed", str(int(rng.integers(1, 1 << 30))), *SHAPE)
                ids = [int(t) for t in rng.integers(0, 1000, 48)]
                theirs = llama_logits(path, ids)
                two = np.sort(theirs, axis=1)[:, -2:]
                for mode in ("each", "all"):
                    ours = engine_logits(path, ids, d, mode)
                    rel = np.linalg.norm(ours - theirs) / np.linalg.norm(theirs)
                    same = ours.argmax(1) == theirs.argmax(1)
                    # Decided positions: llama.cpp's best two logits apart by a tenth of the row's
                    # spread and by eight times the row's measured difference between the two
                    # runners (rms over the row): the two logits' differences would have to part
                    # by 5.7 standard deviations to swap them. (The spread alone left 3 standard
                    # deviations, which over 13 types, 3 architectures and 2 modes failed a run.)
                    noise = np.sqrt(np.mean((ours - theirs) ** 2, axis=1))
                    gap = two[:, 1] - two[:, 0]
                    decided = (gap > 0.1 * theirs.std(axis=1)) & (gap > 8 * noise)
                    ok = rel <= bound and bool(np.all(same[decided]))
                    print(f"{arch:6} {mix:7} {mode:4} relative error {rel:.2e} (bound {bound:.0e}), same top "
                          f"token at {np.mean(same):.0%} of the positions and {int(np.sum(same[decided]))} of "
                          f"the {int(np.sum(decided))} decided{'' if ok else '  FAILED'}")
                    if not ok:
                        failures.append(f"{arch} {mix} {mode}")
    if failures:
        sys.exit(f"against llama.cpp {llama_cpp.__version__}: {', '.join(failures)}")
    print(f"every architecture and type within its bound of llama.cpp {llama_cpp.__version__}")


if __name__ == "__main__":
    main()
