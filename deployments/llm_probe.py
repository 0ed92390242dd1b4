"""Which dtype vLLM's CPU engine can run on this machine. Runs in the LLM environment only.

vLLM picks bfloat16 on CPU by default, and on some CPUs (seen on machines reporting AMX
and AVX512-FP16) its worker dies with SIGILL on the first bfloat16 generation while
float32 works. `scripts/setup-llm` runs this once per environment:

    .venv-llm/bin/python -m deployments.llm_probe <environment>/.ml-service-cpu-dtype

It starts a tiny engine in a child process, generates a few tokens in bfloat16 and writes
`bfloat16` when that worked, else `float32`. The service's vLLM backend reads the file for
CPU engines whose `serving.llm.dtype` is `auto` (see `app.adapters.vllm_backend`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_TIMEOUT_S = 300


def _generate(model_dir: str, dtype: str, log_path: str, done: Any) -> None:
    """Child process: one short greedy generation; sets `done` when it produced tokens
    (it may die instead). Its (long) output goes to `log_path`."""
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    from vllm import LLM, SamplingParams

    engine = LLM(model=model_dir, dtype=dtype, enforce_eager=True, max_model_len=128)
    out = engine.generate(["hello world"], SamplingParams(max_tokens=4, temperature=0))
    if out and out[0].outputs and out[0].outputs[0].token_ids:
        done.set()


def runs(model_dir: str, dtype: str, log_path: str) -> bool:
    """Whether a generation in `dtype` completes (in a child process, which may die).

    The answer is the child's signal, not its exit: vLLM's engine (a process of its own)
    can keep the child from exiting after the generation. The child and every process it
    started are killed once the answer is known, so nothing outlives the probe.
    """
    import psutil

    context = multiprocessing.get_context("spawn")
    done = context.Event()
    child = context.Process(target=_generate, args=(model_dir, dtype, log_path, done))
    child.start()
    deadline = time.monotonic() + _TIMEOUT_S
    while not done.is_set() and child.is_alive() and time.monotonic() < deadline:
        done.wait(0.5)
    worked = done.is_set()
    try:
        tree = [*psutil.Process(child.pid).children(recursive=True), psutil.Process(child.pid)]
    except psutil.NoSuchProcess:
        tree = []
    for process in tree:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(tree, timeout=30)
    child.join()
    return worked


def probe(log_path: str) -> str:
    """`bfloat16` if a tiny engine generates in it here, else `float32`."""
    from app.samples.tiny_llm import build_tiny_llama

    with tempfile.TemporaryDirectory(prefix="llm-probe-") as directory:
        model_dir = str(build_tiny_llama(Path(directory) / "tiny"))
        return "bfloat16" if runs(model_dir, "bfloat16", log_path) else "float32"


def main() -> None:
    """Write the probed dtype to the file named on the command line (the engine's log
    beside it, `<file>.log`)."""
    target = Path(sys.argv[1])
    log_path = target.with_name(target.name + ".log")
    log_path.unlink(missing_ok=True)
    dtype = probe(str(log_path))
    target.write_text(dtype + "\n")
    sys.stderr.write(f"llm_probe: vLLM's CPU engine runs {dtype} here (log: {log_path})\n")


if __name__ == "__main__":
    main()
