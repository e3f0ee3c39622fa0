"""Shared end-to-end helpers: run the installed CLI in a subprocess, read a run's
TensorBoard event files back."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

LLMKIT = Path(sys.executable).with_name("llmkit")  # the console script of this environment

TEXT_SUFFIX = "/text_summary"  # how add_text names its tensor tags


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


class RunEvents:
    """Everything a run's TensorBoard event files hold (all files of the folder: a resumed
    run adds one), read back with TensorBoard's own reader."""

    def __init__(self, run_dir: Path) -> None:
        assert list(Path(run_dir).glob("events.out.tfevents.*")), f"no event file in {run_dir}"
        self._acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        self._acc.Reload()
        tags = self._acc.Tags()
        self.scalar_tags: set[str] = set(tags["scalars"])
        self.text_tags: set[str] = {t.removesuffix(TEXT_SUFFIX) for t in tags["tensors"]
                                    if t.endswith(TEXT_SUFFIX)}

    def scalars(self, tag: str) -> list[tuple[int, float]]:
        """`(step, value)` of each event of a scalar tag, in the order written."""
        return [(e.step, e.value) for e in self._acc.Scalars(tag)]

    def texts(self, tag: str) -> list[tuple[int, str]]:
        """`(step, text)` of each text summary logged under `tag` (e.g. samples/generated)."""
        events = self._acc.Tensors(tag + TEXT_SUFFIX)
        return [(e.step, e.tensor_proto.string_val[0].decode("utf-8")) for e in events]


@pytest.fixture(scope="session")
def read_events() -> Callable[[Path], RunEvents]:
    """`read_events(run_dir) -> RunEvents`."""
    return RunEvents
