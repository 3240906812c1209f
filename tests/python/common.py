"""Shared helpers for the Python tests: paths to the engine's tools (from ctest's environment)."""
import json
import os
import subprocess
import sys
import tempfile

MKMODEL = os.environ.get("ENGINE_MKMODEL", "engine-mkmodel")
INSPECT = os.environ.get("ENGINE_INSPECT", "engine-inspect")
QUANT_TOOL = os.environ.get("ENGINE_QUANT_TOOL", "engine-quant-tool")
FORWARD_TOOL = os.environ.get("ENGINE_FORWARD_TOOL", "engine-forward-tool")
ENGINE_RUN = os.environ.get("ENGINE_RUN", "engine-run")
FIXTURES = os.environ.get("ENGINE_FIXTURES", os.path.join(os.path.dirname(__file__), "../../../shared/fixtures"))


def run(*args, check=True, env=None):
    """Runs a tool; env, where given, is added to this process's environment."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check,
                          env={**os.environ, **env} if env else None)


def mkmodel(path, *flags):
    run(MKMODEL, "--out", path, *flags)
    return path


def inspect_json(path):
    return json.loads(run(INSPECT, "--json", path).stdout)


def tempdir():
    return tempfile.TemporaryDirectory(prefix="engine-py-")


def llama_cpp_or_skip():
    """llama-cpp-python's module, the peer of the tests against llama.cpp (scripts/test installs
    it); where it is not installed, the test exits 77, which ctest reports as skipped, the reason
    printed."""
    try:
        import llama_cpp
    except ImportError:
        print("SKIPPED: llama_cpp (pip install llama-cpp-python==0.3.36) is not installed")
        sys.exit(77)
    return llama_cpp
