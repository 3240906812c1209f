"""Every tool's answer to bad input: a bad flag, a bad value, a missing, truncated or foreign file.
Each must exit non-zero with nothing on stdout (no partial output) and exactly one line on stderr
that starts with the tool's name and names what was wrong (the flag, or the file and its field).
Also engine-run at its limits: --seed -1, a generation that fills the context says so, and its
stats line follows the text where both go to one pipe."""
import json
import os
import shutil
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(__file__))
from common import ENGINE_RUN, INSPECT, MKMODEL, mkmodel, run, tempdir  # noqa: E402

BENCH = os.environ.get("ENGINE_BENCH", "engine-bench")
TOKENIZE = os.environ.get("ENGINE_TOKENIZE", "engine-tokenize")
PERPLEXITY = os.environ.get("ENGINE_PERPLEXITY", "engine-perplexity")


class CliErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempdir()
        d = cls.dir.name
        cls.model = mkmodel(os.path.join(d, "tiny.gguf"), "--preset", "tiny", "--type", "q8_0")
        with open(cls.model, "rb") as f:
            data = f.read()
        cls.truncated = os.path.join(d, "truncated.gguf")
        with open(cls.truncated, "wb") as f:
            f.write(data[:1000])  # inside the metadata
        cls.headless = os.path.join(d, "headless.gguf")
        with open(cls.headless, "wb") as f:
            f.write(data[:len(data) // 2])  # metadata whole, tensor data cut short
        cls.text = os.path.join(d, "notes.txt")
        with open(cls.text, "w") as f:
            f.write("not a model\n" * 10)
        cls.empty = os.path.join(d, "empty.gguf")
        open(cls.empty, "wb").close()
        # Another tokenizer: <think> and </think> where the tiny model has filler pieces.
        cls.thinking = mkmodel(os.path.join(d, "thinking.gguf"), "--preset", "tiny", "--arch", "qwen2",
                               "--chat-template", "qwq", "--type", "q8_0")

    @classmethod
    def tearDownClass(cls):
        cls.dir.cleanup()

    def expect_one_line(self, tool, args, *needles):
        r = run(tool, *args, check=False)
        what = f"{os.path.basename(tool)} {' '.join(map(str, args))}"
        self.assertNotEqual(r.returncode, 0, what)
        self.assertLess(r.returncode, 128, f"{what}: killed by a signal\n{r.stderr}")
        self.assertEqual(r.stdout, "", f"{what}: output on stdout")
        lines = r.stderr.splitlines()
        self.assertEqual(len(lines), 1, f"{what}: stderr is not one line:\n{r.stderr}")
        self.assertTrue(lines[0].startswith(os.path.basename(tool) + ": "), f"{what}: {lines[0]}")
        for needle in needles:
            self.assertIn(needle, lines[0], what)

    def test_bad_flags(self):
        m = self.model
        cases = [
            (ENGINE_RUN, ["-m", m, "-p", "x", "--bogus"], "--bogus"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--ctx", "abc"], "--ctx", "abc"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--ctx", "0"], "--ctx"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "-n", "abc"], "--n-predict", "abc"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--kv-type", "q4"], "--kv-type", "q4"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--temp", "-1"], "temperature"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--top-p", "2"], "top_p"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--repeat-last-n", "-1"], "repeat_last_n"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--devices", "foo"], "--devices", "foo"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--split", "30,34"], "--split"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--reserve", "200%"], "--reserve", "200%"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--transport", "bogus"], "--transport", "bogus"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--system", "be brief"], "--system", "--chat"),
            (ENGINE_RUN, ["-m", m, "--prompt-ids", "1,abc"], "--prompt-ids", "abc"),
            (ENGINE_RUN, ["-m", m, "--prompt-ids", "99999"], "99999", "vocabulary"),
            (ENGINE_RUN, ["-m", m, "--prompt-ids", ",".join(["1"] * 40), "--ctx", "16"], "40 tokens", "--ctx"),
            (ENGINE_RUN, ["-m", m], "nothing to do"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--seed", "-2"], "--seed", "-2"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--stop", ""], "--stop", "empty"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "-f", self.text], "--prompt", "--file"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--draft-max", "4"], "--draft-max", "--model-draft"),
            (BENCH, ["-m", m, "--draft-max", "4"], "--draft-max", "--model-draft"),
            (BENCH, ["-m", m, "--md", self.truncated, "-p", "0", "-n", "4"], self.truncated),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--model-draft", self.thinking], self.thinking, "draft model", "token"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--model-draft", self.truncated], self.truncated),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--model-draft", m, "--draft-max", "4", "--draft-min", "5"], "n_min"),
            (ENGINE_RUN, ["-m", m, "-p", "x", "--model-draft", m, "--draft-p-min", "2"], "--draft-p-min"),
            (BENCH, ["-m", m, "--bogus"], "--bogus"),
            (BENCH, ["-m", m, "-o", "xml"], "--output", "xml"),
            (INSPECT, [], "file"),
            (INSPECT, [m, "--bogus"], "--bogus"),
            (MKMODEL, ["--out", os.path.join(self.dir.name, "x.gguf"), "--type", "q3"], "--type", "q3"),
            (MKMODEL, ["--type", "q8_0"], "--out"),
            (TOKENIZE, ["-m", m, "--text", "1 x", "--detokenize"], "--detokenize"),
            (PERPLEXITY, ["-m", m, "-f", self.text, "--ctx", "8"], "--ctx", "8"),
            (PERPLEXITY, ["-m", m, "-f", self.text, "--ctx", "4096"], "fewer than one chunk"),
            (PERPLEXITY, ["-m", m, "-f", self.text, "-t", "-3"], "--threads", "-3"),
            (PERPLEXITY, ["-m", m, "-f", self.text, "--transport", "bogus"], "--transport", "bogus"),
            (PERPLEXITY, ["-m", m, "-f", self.text, "--ubatch", "0"], "--ubatch", "0"),
            (BENCH, ["-m", m, "-t", "-3"], "--threads", "-3"),
            (BENCH, ["-m", m, "-d", "abc"], "-d", "abc"),
        ]
        for tool, args, *needles in cases:
            with self.subTest(tool=os.path.basename(tool), args=args):
                self.expect_one_line(tool, args, *needles)

    def test_bad_files(self):
        # (engine-bench reports a model it cannot load in its table's error column: test_bench.py)
        missing = os.path.join(self.dir.name, "missing.gguf")
        for path, needles in [(missing, [missing]), (self.dir.name, [self.dir.name]),
                              (self.empty, [self.empty]), (self.text, [self.text]),
                              (self.truncated, [self.truncated]), (self.headless, [self.headless])]:
            for tool, args in [(ENGINE_RUN, ["-m", path, "-p", "x"]), (ENGINE_RUN, ["-m", path, "--plan"]),
                               (INSPECT, [path]), (TOKENIZE, ["-m", path, "--text", "x"])]:
                with self.subTest(tool=os.path.basename(tool), path=os.path.basename(path)):
                    self.expect_one_line(tool, args, *needles)

    def test_seed_minus_one_is_from_the_clock(self):
        """As llama.cpp's --seed -1: a fresh seed each run; a given seed repeats its tokens."""
        def tokens(seed):
            out = run(ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3", "-n", "16", "--temp", "1.5",
                      "--seed", seed, "--json").stdout
            return json.loads(out)["tokens"]
        self.assertEqual(tokens("5"), tokens("5"))
        self.assertNotEqual(tokens("-1"), tokens("-1"))

    def test_a_full_context_is_named(self):
        r = run(ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3,4,5", "-n", "100", "--ctx", "32",
                "--greedy", "--json")
        j = json.loads(r.stdout)
        if j["stop"] == "eos":
            self.assertLess(len(j["tokens"]), 28)
            return  # the model's greedy path ended on its own this time
        self.assertEqual(j["stop"], "context")
        self.assertEqual(len(j["tokens"]), 32 - 5 + 1)  # the last from the last position's logits
        self.assertIn("the context of 32 is full", r.stderr)
        j = json.loads(run(ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3", "-n", "4", "--json").stdout)
        self.assertIn(j["stop"], ("length", "eos"))

    def test_a_draft_model_gives_the_models_tokens(self):
        # Speculative decoding with the model as its own draft: every drafted token is the one the
        # model samples (f32 weights: a batch's sums round as a single step's, to within ties no
        # random model has), so the tokens are plain decoding's, from fewer evaluations.
        f32 = mkmodel(os.path.join(self.dir.name, "tiny-f32.gguf"), "--preset", "tiny", "--type", "f32")
        args = ["-m", f32, "--prompt-ids", "5,6,7,8", "-n", "24", "--temp", "0.2", "--seed", "5", "--json"]
        plain = json.loads(run(ENGINE_RUN, *args).stdout)
        r = run(ENGINE_RUN, *args, "--model-draft", f32, "--draft-max", "3", "--draft-p-min", "0")
        spec = json.loads(r.stdout)
        self.assertEqual(spec["tokens"], plain["tokens"])
        self.assertEqual(spec["stop"], plain["stop"])
        d = spec["draft"]
        self.assertEqual(d["model"], f32)
        self.assertGreater(d["drafted"], 0)
        # After the prompt's token, each step gives its kept drafts and one token of its own (an end
        # token among the drafts ends it before that one).
        n = len(spec["tokens"]) - 1
        if spec["stop"] == "length":
            self.assertEqual(d["target_steps"] + d["accepted"], n)
        else:
            self.assertIn(d["target_steps"] + d["accepted"], (n, n + 1))
        self.assertIn(" drafted tokens accepted (", r.stderr)
        self.assertIn("draft: plan for", r.stderr)

    def test_the_stats_line_follows_the_text_in_one_pipe(self):
        # stdout and stderr into one pipe (as `2>&1 | tee`): the text's last line ends before the
        # stats line begins, though stdout is block-buffered there.
        r = subprocess.run([ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3", "-n", "8", "--greedy"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertIn("\nprompt: 3 tokens at ", r.stdout)
        self.assertTrue(r.stdout.endswith(" tokens/s\n"), r.stdout)

    def test_repeat_last_n_reaches_the_sampler(self):
        def tokens(*flags):
            return json.loads(run(ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3", "-n", "24", "--greedy",
                                  "--json", *flags).stdout)["tokens"]
        plain = tokens()
        self.assertEqual(tokens("--repeat-penalty", "3", "--repeat-last-n", "0"), plain)  # a window of none
        if len(set(plain)) < len(plain):  # a repeat for the penalty to break
            penalized = tokens("--repeat-penalty", "3", "--repeat-last-n", "64")
            self.assertNotEqual(penalized, plain)
            self.assertGreater(len(set(penalized)), len(set(plain)))

    def test_threads_follow_the_affinity_mask(self):
        """By default one thread per core the process may use: taskset's one CPU gives one thread."""
        if shutil.which("taskset") is None:
            self.skipTest("taskset (util-linux) is not installed")
        r = run("taskset", "-c", "0", ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2", "-n", "2", "--json")
        self.assertIn("CPU kernels", r.stderr)
        self.assertIn(", 1 thread\n", r.stderr)
        self.assertNotIn("warning", r.stderr)
        self.assertEqual(json.loads(r.stdout)["threads"], 1)
        r = run("taskset", "-c", "0", ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2", "-n", "2", "-t", "3",
                "--json")
        self.assertIn(", 3 threads\n", r.stderr)  # as asked, with a warning
        self.assertIn("warning: 3 threads on the 1 CPU this process may use", r.stderr)
        bench = run("taskset", "-c", "0", BENCH, "-m", self.model, "-p", "4", "-n", "0", "-r", "1", "-t", "2")
        self.assertIn("engine-bench: warning: 2 threads on the 1 CPU", bench.stderr)
        bench = run("taskset", "-c", "0", BENCH, "-m", self.model, "-p", "4", "-n", "0", "-r", "1")
        self.assertNotIn("warning", bench.stderr)

    def test_a_stop_string_ends_the_text_before_it(self):
        """The text ends where a --stop string first appears in what the tokens spell, without it
        (a random model's text is random bytes: the stop strings are bytes, \\xff too)."""
        tokenize = os.environ.get("ENGINE_TOKENIZE", "engine-tokenize")
        args = [ENGINE_RUN, "-m", self.model, "--prompt-ids", "1,2,3", "-n", "48", "--temp", "1.5", "--seed", "11",
                "-t", "1"]
        free = json.loads(run(*args, "--json").stdout)
        spelled = subprocess.run([tokenize, "-m", self.model, "--detokenize", "--text",
                                  " ".join(map(str, free["tokens"]))], capture_output=True, check=True).stdout[:-1]
        for stop in (b"a", b"e", b"ab", b"\xff"):
            with self.subTest(stop=stop):
                cut = subprocess.run([os.fsencode(a) for a in args] + [b"--stop", stop], capture_output=True,
                                     check=True)
                reason = json.loads(subprocess.run([os.fsencode(a) for a in args] + [b"--json", b"--stop", stop],
                                                   capture_output=True, check=True).stdout)["stop"]
                text = cut.stdout[:-1]  # the text as printed, then a newline
                if stop in spelled:
                    self.assertEqual(text, spelled[:spelled.index(stop)])
                    self.assertEqual(reason, "stop_string")
                else:
                    self.assertEqual(text, spelled)
                    self.assertNotEqual(reason, "stop_string")

if __name__ == "__main__":
    unittest.main()
