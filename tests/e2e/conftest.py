"""Shared end-to-end helpers: run the installed CLI in a subprocess, read a run's
TensorBoard event files back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

LLMKIT = Path(sys.executable).with_name("llmkit")  # the console script of this environment


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_process() -> Iterator[None]:
    """CLI subprocesses started by these tests run torch on one intra-op thread.

    The tiny test models train faster on one thread than on two, and many times faster
    when the machine's cores are busy (threads that wait for each other on every small
    matrix product). Set in this process's environment, so that it reaches every
    subprocess a test starts, with these helpers or its own.
    """
    before = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if before is None:
        del os.environ["OMP_NUM_THREADS"]
    else:
        os.environ["OMP_NUM_THREADS"] = before


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: unbuffered output, so that a test can follow
    it while the command runs."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def _report(args: tuple[str, ...], proc: subprocess.CompletedProcess) -> str:
    return (f"llmkit {' '.join(args)} exited {proc.returncode}\n--- stdout\n"
            f"{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def llmkit() -> Callable[..., subprocess.CompletedProcess]:
    """`llmkit(*args, cwd=DIR, timeout=120, ok=True)`: run the installed CLI, capture its
    output (text). With `ok`, a non-zero exit fails the test and shows the output; with
    `ok=False` the caller checks the exit status itself."""

    def run(*args: str, cwd: Path, timeout: float = 120,
            ok: bool = True) -> subprocess.CompletedProcess:
        assert LLMKIT.is_file(), f"{LLMKIT} is missing: pip install -e . in this environment"
        proc = subprocess.run([str(LLMKIT), *args], cwd=cwd, env=cli_env(),
                              capture_output=True, text=True, timeout=timeout)
        if ok and proc.returncode != 0:
            pytest.fail(_report(args, proc))
        return proc

    return run


@pytest.fixture(scope="session")
def start_llmkit() -> Callable[..., subprocess.Popen]:
    """`start_llmkit(*args, cwd=DIR)`: start the CLI without waiting; stdout and stderr
    go to `DIR/llmkit.out` and `DIR/llmkit.err` (pipes could fill up and block it)."""

    def start(*args: str, cwd: Path) -> subprocess.Popen:
        with open(cwd / "llmkit.out", "w") as out, open(cwd / "llmkit.err", "w") as err:
            return subprocess.Popen([str(LLMKIT), *args], cwd=cwd, env=cli_env(), stdout=out,
                                    stderr=err, text=True)

    return start
