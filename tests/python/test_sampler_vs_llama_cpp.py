"""The sampler against llama.cpp's own sampler chain (through the llama-cpp-python package): for
random rows of logits and settings, the tokens left by llama.cpp's default chain (penalties,
top-k, top-p, min-p, temperature; what its dist sampler draws from) and their probabilities
against Sampler::distribution's. Exits 77 (ctest: skipped, with the reason) where the package is
not installed (scripts/test installs it, llama-cpp-python==0.3.36)."""
import ctypes
import json
import math
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import llama_cpp_or_skip  # noqa: E402

llama_cpp = llama_cpp_or_skip()
SAMPLER_TOOL = os.environ.get("ENGINE_SAMPLER_TOOL", "engine-sampler-tool")


def penalties(n_vocab, last_n, repeat):
    """llama.cpp's penalties sampler: (n_vocab, last_n, repeat, frequency, presence) in the
    llama-cpp-python 0.3 releases, (last_n, repeat, frequency, presence) in llama.cpp since."""
    if len(llama_cpp.llama_sampler_init_penalties.argtypes) == 5:
        return llama_cpp.llama_sampler_init_penalties(n_vocab, last_n, repeat, 0.0, 0.0)
    return llama_cpp.llama_sampler_init_penalties(last_n, repeat, 0.0, 0.0)


def llama_distribution(row):
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    if row["repeat_penalty"] != 1.0 and row["repeat_last_n"] > 0:
        llama_cpp.llama_sampler_chain_add(chain, penalties(len(row["logits"]), row["repeat_last_n"], row["repeat_penalty"]))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(row["top_k"]))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(row["top_p"], 0))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(row["min_p"], 0))
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(row["temperature"]))
    for t in row["history"]:
        llama_cpp.llama_sampler_accept(chain, t)
    n = len(row["logits"])
    data = (llama_cpp.llama_token_data * n)()
    for i, l in enumerate(row["logits"]):
        data[i].id, data[i].logit, data[i].p = i, l, 0.0
    cur = llama_cpp.llama_token_data_array(data, n, -1, False)
    llama_cpp.llama_sampler_apply(chain, ctypes.byref(cur))
    kept = [(cur.data[i].id, cur.data[i].logit) for i in range(cur.size)]
    llama_cpp.llama_sampler_free(chain)
    top = max(l for _, l in kept)
    w = {t: math.exp(l - top) for t, l in kept}  # the dist sampler's softmax of what is left
    total = sum(w.values())
    return {t: v / total for t, v in w.items() if v > 0}


def near_a_cut(row, token):
    """Whether float (llama.cpp) and double (ours) may rightly disagree on `token`: its top-p mass
    before it within 1e-5 of the cut (1e-5 per thousand tokens of the row for rows longer than
    that: llama.cpp's float sums over a whole 152064-token row drift by more than 1e-5), or its
    min-p ratio within 1e-5."""
    l = np.array(row["logits"], dtype=np.float32)
    if row["repeat_penalty"] != 1.0 and row["repeat_last_n"] > 0:
        pen = np.float32(row["repeat_penalty"])
        for t in set(row["history"][-row["repeat_last_n"]:]):
            l[t] = l[t] / pen if l[t] > 0 else l[t] * pen
    order = sorted(range(len(l)), key=lambda i: (-float(l[i]), i))
    if row["top_k"] > 0:
        order = order[:row["top_k"]]
    if token not in order:
        return False
    top = float(l[order[0]])
    w = np.array([math.exp(float(l[i]) - top) for i in order])
    before = float(np.sum(w[:order.index(token)]) / np.sum(w))
    if row["top_p"] < 1.0 and abs(before - row["top_p"]) < 1e-5 * max(1.0, len(l) / 1000):
        return True
    return row["min_p"] > 0 and abs(float(l[token]) - top - math.log(row["min_p"])) < 1e-5


def main():
    rng = np.random.default_rng(int.from_bytes(os.urandom(4), "little"))
    rows = []
    for trial in range(300):
        n = int(rng.choice([50, 1000, 32000, 152064] if trial % 30 == 0 else [50, 300, 1000, 5000]))
        scale = float(rng.choice([0.5, 2.0, 6.0]))
        logits = (rng.standard_normal(n) * scale).astype(np.float32)  # continuous: no ties, whose order llama.cpp leaves open
        rows.append({
            "temperature": float(rng.choice([0.3, 0.8, 1.0, 1.7])),
            "top_k": int(rng.choice([0, 1, 5, 40, 200])),
            "top_p": float(rng.choice([1.0, 0.5, 0.9, 0.95])),
            "min_p": float(rng.choice([0.0, 0.05, 0.2])),
            "repeat_penalty": float(rng.choice([1.0, 1.1, 0.7])),
            "repeat_last_n": int(rng.choice([0, 16, 64])),
            "logits": [float(v) for v in logits],
            "history": [int(t) for t in rng.integers(0, n, int(rng.integers(0, 80)))],
        })
    out = subprocess.run([SAMPLER_TOOL], input="\n".join(json.dumps(r) for r in rows), capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len(out) == len(rows), f"{len(out)} answers for {len(rows)} rows"
    worst = 0.0
    boundary = 0
    for i, (row, line) in enumerate(zip(rows, out)):
        ours = json.loads(line)
        got = {t: p for t, p in zip(ours["ids"], ours["p"]) if p > 0}
        want = llama_distribution(row)
        settings = {k: row[k] for k in row if k not in ("logits", "history")}
        differ = set(got) ^ set(want)
        if differ and all(near_a_cut(row, t) for t in differ):
            boundary += 1  # a cut that float and double arithmetic place on either side of a token
            continue
        assert not differ, (f"row {i} ({len(row['logits'])} logits, {settings}): tokens only ours "
                            f"{sorted(set(got) - set(want))[:8]}, only llama.cpp's {sorted(set(want) - set(got))[:8]}")
        for t, p in want.items():
            worst = max(worst, abs(got[t] - p))
            assert abs(got[t] - p) <= 1e-5 * max(p, 1e-3), f"row {i} ({settings}): token {t} p {got[t]} vs llama.cpp's {p}"
    assert boundary <= len(rows) // 20, f"{boundary} rows differ at a cut"
    print(f"{len(rows)} rows: the same tokens as llama.cpp {llama_cpp.__version__}'s chain, probabilities within "
          f"{worst:.2e} ({boundary} rows with a token on a cut's float/double boundary)")


if __name__ == "__main__":
    main()
