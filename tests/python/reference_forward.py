"""An independent forward pass in NumPy (float64) for llama, qwen2 and qwen3 GGUF models.

Reads the file with the gguf package and dequantizes every tensor with gguf's own dequantizer, so
nothing here shares code with the engine. Processes the whole sequence at once with a causal mask
(no KV cache), which also makes it a reference for the engine's cached, batched evaluation.
"""
import numpy as np
import gguf


class Reference:
    def __init__(self, path):
        r = gguf.GGUFReader(path)
        self.arch = r.fields["general.architecture"].contents()
        f = lambda k, d=None: r.fields[k].contents() if k in r.fields else d  # noqa: E731
        a = self.arch
        self.n_layer = f(f"{a}.block_count")
        self.n_embd = f(f"{a}.embedding_length")
        self.n_head = f(f"{a}.attention.head_count")
        self.n_head_kv = f(f"{a}.attention.head_count_kv", self.n_head)
        self.head_dim = f(f"{a}.attention.key_length", self.n_embd // self.n_head)
        self.n_rot = f(f"{a}.rope.dimension_count", self.head_dim)
        self.base = f(f"{a}.rope.freq_base", 10000.0)
        self.eps = f(f"{a}.attention.layer_norm_rms_epsilon")
        self.neox = a in ("qwen2", "qwen3")
        # End of generation, as llama.cpp decides it: the declared ids plus turn-end control tokens.
        self.eog = {f(k) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                    "tokenizer.ggml.eom_token_id") if k in r.fields}
        if "tokenizer.ggml.tokens" in r.fields:
            texts, types = f("tokenizer.ggml.tokens"), f("tokenizer.ggml.token_type", [])
            for i, text in enumerate(texts):
                if text in ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                            "<｜end▁of▁sentence｜>", "<|eom_id|>") and i < len(types) and types[i] == 3:
                    self.eog.add(i)
        self.w = {}
        for t in r.tensors:
            x = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)
            self.w[t.name] = x.reshape(-1) if len(t.shape) == 1 else x.reshape(int(t.shape[1]), int(t.shape[0]))
        self.out = self.w.get("output.weight", self.w["token_embd.weight"])

    def rms(self, x, weight):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * weight

    def rope(self, x, positions):
        # x: (seq, heads, head_dim)
        half = self.n_rot // 2
        inv = self.base ** (-np.arange(0, self.n_rot, 2, dtype=np.float64) / self.n_rot)
        ang = positions[:, None] * inv[None, :]  # (seq, half)
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        y = x.copy()
        if self.neox:
            a, b = x[..., :half], x[..., half:self.n_rot]
            y[..., :half] = a * c - b * s
            y[..., half:self.n_rot] = a * s + b * c
        else:
            a, b = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]
            y[..., 0:self.n_rot:2] = a * c - b * s
            y[..., 1:self.n_rot:2] = a * s + b * c
        return y

    def logits(self, tokens):
        """Logits after every position: (len(tokens), n_vocab)."""
        n, hd = len(tokens), self.head_dim
        x = self.w["token_embd.weight"][np.array(tokens)]
        pos = np.arange(n, dtype=np.float64)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        group = self.n_head // self.n_head_kv
        for l in range(self.n_layer):
            W = lambda name: self.w[f"blk.{l}.{name}"]  # noqa: E731
            h = self.rms(x, W("attn_norm.weight"))
            q, k, v = h @ W("attn_q.weight").T, h @ W("attn_k.weight").T, h @ W("attn_v.weight").T
            if f"blk.{l}.attn_q.bias" in self.w:
                q, k, v = q + W("attn_q.bias"), k + W("attn_k.bias"), v + W("attn_v.bias")
            q = q.reshape(n, self.n_head, hd)
            k = k.reshape(n, self.n_head_kv, hd)
            v = v.reshape(n, self.n_head_kv, hd)
            if f"blk.{l}.attn_q_norm.weight" in self.w:
                q, k = self.rms(q, W("attn_q_norm.weight")), self.rms(k, W("attn_k_norm.weight"))
            q, k = self.rope(q, pos), self.rope(k, pos)
            out = np.empty((n, self.n_head, hd))
            for head in range(self.n_head):
                kh, vh = k[:, head // group], v[:, head // group]
                scores = q[:, head] @ kh.T / np.sqrt(hd) + mask
                p = np.exp(scores - scores.max(axis=1, keepdims=True))
                p /= p.sum(axis=1, keepdims=True)
                out[:, head] = p @ vh
            attn = out.reshape(n, -1) @ W("attn_output.weight").T
            if f"blk.{l}.attn_output.bias" in self.w:
                attn = attn + W("attn_output.bias")
            x = x + attn
            h = self.rms(x, W("ffn_norm.weight"))
            g, u = h @ W("ffn_gate.weight").T, h @ W("ffn_up.weight").T
            x = x + (g / (1 + np.exp(-g)) * u) @ W("ffn_down.weight").T
        return self.rms(x, self.w["output_norm.weight"]) @ self.out.T

    def greedy(self, prompt, n):
        """Up to n argmax tokens (like the engine, stopping after an end-of-generation token), and
        the smallest gap between the best and second-best logit along the way."""
        tokens, min_gap = list(prompt), np.inf
        for _ in range(n):
            last = self.logits(tokens)[-1]
            top2 = np.sort(last)[-2:]
            min_gap = min(min_gap, top2[1] - top2[0])
            tokens.append(int(np.argmax(last)))
            if tokens[-1] in self.eog:
                break
        return tokens[len(prompt):], min_gap
