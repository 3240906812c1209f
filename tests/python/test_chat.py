"""engine-run --chat end to end on a model with a ChatML template: two turns from stdin, the KV
cache kept across them (the second turn processes only its own tokens), and the formatted turn
tokenized as the template prescribes. When a turn no longer fits with room for its reply, the
conversation starts again from the system prompt with the turns that fit (here: none but the new
one); a message that cannot fit even so is one line of error. A --stop string ends a reply before
it."""
import os
import re
import sys
import unittest

import gguf

sys.path.insert(0, os.path.dirname(__file__))
from common import ENGINE_RUN, mkmodel, run, tempdir  # noqa: E402

TOKENIZE = os.environ.get("ENGINE_TOKENIZE", "engine-tokenize")
STATS = re.compile(r"\[(\d+) new prompt tokens, (\d+) generated, context (\d+)/(\d+);")
FIRST = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n"
         "<|im_start|>assistant\n")


def count_tokens(model, text):
    out = run(TOKENIZE, "--model", model, "--no-bos", "--text", text).stdout.split()
    return len(out)


class ChatKeepsTheCache(unittest.TestCase):
    def test_two_turns(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "qwen2.gguf"), "--arch", "qwen2")
            n = 6
            r = __import__("subprocess").run(
                [ENGINE_RUN, "--model", model, "--chat", "--system", "Be brief.", "-n", str(n),
                 "--seed", "7"], input=b"first question\nsecond question\n", capture_output=True,
                check=True)
            # A random model emits random byte tokens: its text need not be valid UTF-8.
            r.stdout, r.stderr = (r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"))
            self.assertIn("chat template: chatml", r.stderr)
            turns = [tuple(map(int, m)) for m in STATS.findall(r.stderr)]
            self.assertEqual(len(turns), 2, r.stderr)
            (p1, g1, c1, _), (p2, g2, c2, _) = turns
            first = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nfirst question"
                     "<|im_end|>\n<|im_start|>assistant\n")
            self.assertEqual(p1, count_tokens(model, first))
            # Turn 2: the end of the reply, then only the new user turn (plus the reply's last
            # token when the reply was cut off by -n rather than ended by the model).
            second = "<|im_end|>\n<|im_start|>user\nsecond question<|im_end|>\n<|im_start|>assistant\n"
            self.assertIn(p2 - count_tokens(model, second), (0, 1))
            self.assertLess(p2, p1 + g1)
            self.assertEqual(c1, p1 + g1 - 1)
            self.assertEqual(c2, c1 + p2 + g2 - 1)


    def test_a_full_context_drops_the_oldest_turns(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "qwen2.gguf"), "--arch", "qwen2")
            n = 12
            p1 = count_tokens(model, FIRST.format("first question"))
            # Room for the first turn and its reply (n tokens, a quarter of the context at most),
            # not for the second turn's tokens after it.
            ctx = p1 + n + 1
            self.assertGreaterEqual(ctx // 4, n)
            r = __import__("subprocess").run(
                [ENGINE_RUN, "--model", model, "--chat", "--system", "Be brief.", "-n", str(n), "--ctx", str(ctx),
                 "--seed", "7"], input=b"first question\nthird question\n", capture_output=True, check=True)
            stderr = r.stderr.decode("utf-8", "replace")
            turns = [tuple(map(int, m)) for m in STATS.findall(stderr)]
            self.assertEqual(len(turns), 2, stderr)
            (q1, _, _, _), (p2, g2, c2, n_ctx) = turns
            self.assertEqual((q1, n_ctx), (p1, ctx))
            self.assertIn("1 earlier turn left out", stderr)
            self.assertEqual(p2, count_tokens(model, FIRST.format("third question")))  # a fresh start
            self.assertEqual(c2, p2 + g2 - 1)

    def test_a_message_too_long_for_the_context_is_one_line(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "qwen2.gguf"), "--arch", "qwen2")
            r = run(ENGINE_RUN, "--model", model, "--chat", "--system", "word " * 100, "-p", "hi", "--ctx", "64",
                    check=False)
            self.assertNotEqual(r.returncode, 0)
            self.assertEqual(r.stdout, "")
            last = r.stderr.splitlines()[-1]
            self.assertTrue(last.startswith("engine-run: chat: the message takes"), r.stderr)
            self.assertIn("the context of 64", last)

    def test_a_stop_string_ends_the_reply_before_it(self):
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "qwen2.gguf"), "--arch", "qwen2")
            args = [ENGINE_RUN, "--model", model, "--chat", "-p", "first question", "-n", "40", "--temp", "1.5",
                    "--seed", "5", "-t", "1"]
            sp = __import__("subprocess")
            free = sp.run(args, capture_output=True, check=True).stdout[:-1]  # the reply, then a newline
            checked = 0
            for stop in (free[5:6], free[12:14], b"\x01\x02\x03"):
                if not stop:
                    continue
                r = sp.run([os.fsencode(a) for a in args] + [b"--stop", stop], capture_output=True, check=True)
                if stop in free:
                    self.assertEqual(r.stdout[:-1], free[:free.index(stop)])
                    self.assertIn(b"stopped at a --stop string", r.stderr)
                    checked += 1
                else:
                    self.assertEqual(r.stdout[:-1], free)
                    self.assertNotIn(b"stopped at a --stop string", r.stderr)
            self.assertGreater(checked, 0, free)


def chat_stats(*args):
    """The turn statistics engine-run --chat prints (a random model's reply need not be UTF-8)."""
    r = __import__("subprocess").run([str(a) for a in args], capture_output=True, check=True)
    return [tuple(map(int, m)) for m in STATS.findall(r.stderr.decode("utf-8", "replace"))]


def chat_template(model):
    return gguf.GGUFReader(model).fields["tokenizer.chat_template"].contents()


class ThinkingSwitch(unittest.TestCase):
    """--no-think against the model's own template rendered by Jinja (jinja2, the engine the
    templates are written for): the first turn processes what the template renders with
    enable_thinking=false, and the reply then leaves the cache where the history's form of it
    begins (what the template renders with thinking on: no empty block)."""

    def test_the_turn_is_what_the_template_renders(self):
        import jinja2
        with tempdir() as d:
            model = mkmodel(os.path.join(d, "qwen3.gguf"), "--arch", "qwen3", "--chat-template", "qwen3")
            template = jinja2.Environment().from_string(chat_template(model))
            messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "first question"}]
            off = template.render(messages=messages, add_generation_prompt=True, enable_thinking=False)
            on = template.render(messages=messages, add_generation_prompt=True)
            self.assertTrue(off.startswith(on) and off != on, (off, on))
            (p1, _, c1, _), = chat_stats(ENGINE_RUN, "--model", model, "--chat", "--no-think", "--system",
                                         "Be brief.", "-p", "first question", "-n", "6", "--seed", "7")
            self.assertEqual(p1, count_tokens(model, off))
            self.assertEqual(c1, count_tokens(model, on))
            # Thinking on: the turn is the template's own rendering without the block.
            (p1, _, _, _), = chat_stats(ENGINE_RUN, "--model", model, "--chat", "--system", "Be brief.", "-p",
                                        "first question", "-n", "6", "--seed", "7")
            self.assertEqual(p1, count_tokens(model, on))

    def test_a_template_without_the_switch_is_one_line(self):
        with tempdir() as d:
            for flags in (["--chat-template", "qwq"], []):
                model = mkmodel(os.path.join(d, "m.gguf"), "--arch", "qwen2", *flags)
                self.assertNotIn("enable_thinking", chat_template(model))
                r = run(ENGINE_RUN, "--model", model, "--chat", "--no-think", "-p", "hi", check=False)
                self.assertNotEqual(r.returncode, 0)
                self.assertEqual(r.stdout, "")
                self.assertEqual(r.stderr.count("\n"), 1, r.stderr)
                self.assertIn("--no-think: " + model + ": tokenizer.chat_template has no enable_thinking", r.stderr)


if __name__ == "__main__":
    unittest.main()
