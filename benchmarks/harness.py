"""Plumbing shared by the benchmark scripts: result JSON, machine description, timing, configs, official code.

A result is one JSON object printed to stdout and, with ``--output``, written to a file; :func:`write_result`
adds the command that produced it and the machine it ran on. Parity results keep the largest absolute
differences (``max_abs_diff``) apart from the size of the official values they are differences of
(``reference_magnitude``), see :class:`Comparison`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import random
import resource
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
PARITY_TOLERANCE = 1e-4


def output_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--output FILE``: also write the JSON there."""
    parser.add_argument("--output", type=Path, help="also write the JSON here (e.g. benchmarks/results/NAME.json)")


def machine() -> dict:
    """Where the numbers were measured: platform, CPU model, cores, torch version and threads, GPU if any."""
    cpuinfo = Path("/proc/cpuinfo")
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")), "") if cpuinfo.exists() else ""
    described = {"platform": platform.platform(), "cpu": cpu or platform.processor(), "cores": os.cpu_count(),
                  "torch": torch.__version__, "threads": torch.get_num_threads(),
                  "load_average": [round(x, 2) for x in os.getloadavg()]}
    if torch.cuda.is_available():
        described["gpu"] = torch.cuda.get_device_name()
    return described


def command_line(module: str, argv: Sequence[str] | None) -> str:
    """The command that reproduces this run, as typed from the repository root."""
    return " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])


def write_result(result: dict, output: Path | None, *, module: str, argv: Sequence[str] | None) -> dict:
    """Add ``command`` and ``machine``, print ``result`` as indented JSON and write it to ``output`` if given."""
    result = result | {"command": command_line(module, argv), "machine": machine()}
    text = json.dumps(result, indent=1)
    print(text)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    return result


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timed(fn: Callable[[], object], repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU seconds of ``repeats`` calls of ``fn`` (CPU time is less sensitive to load)."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def run_in_subprocess(module: str, arguments: Sequence[str]) -> dict:
    """``python -m module arguments`` in a fresh interpreter (its own peak RSS); the last stdout line as JSON."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    done = subprocess.run([sys.executable, "-m", module, *arguments], capture_output=True, text=True, cwd=REPO,
                          env=env)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def config_sections(config: Path, overrides: Sequence[str] = ()) -> tuple[dict, dict]:
    """``model.init_args`` and ``data.init_args`` of a config as ``nowcast fit`` resolves them (includes, links,
    command-line ``overrides`` such as ``--model.init_args.sampler ddim``)."""
    from nowcast_pl.config import read_config  # noqa: PLC0415  (keeps --help fast)

    resolved = read_config([config], list(overrides), build=()).config
    return resolved.model.init_args.as_dict(), resolved.data.init_args.as_dict()


def register_package(name: str, folder: Path) -> None:
    """Make ``import name.sub`` load ``folder/sub.py`` without running ``folder/__init__.py`` (whose imports an
    official checkout may not satisfy here)."""
    registered = sys.modules.get(name)
    if registered is not None and list(getattr(registered, "__path__", [])) == [str(folder)]:
        return
    package = types.ModuleType(name)
    package.__path__ = [str(folder)]
    sys.modules[name] = package


def import_official(checkout: Path, package: str, module: str, *, needs: str) -> types.ModuleType:
    """Import ``module`` from the official code's top-level ``package`` folder at ``checkout`` (never vendored).

    ``needs`` is a file the checkout must hold, named in the error when it does not.
    """
    if not (checkout / needs).is_file():
        raise SystemExit(f"--official {checkout}: no {needs} there; give the path of a checkout of the official code")
    register_package(package, checkout / package)
    return importlib.import_module(module)


def official_revision(checkout: Path) -> str | None:
    """The checked-out commit of an official checkout, or None when it has no git history."""
    done = subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def abs_max(x: torch.Tensor | Sequence[torch.Tensor]) -> float:
    """Largest absolute value of a tensor or of a sequence of tensors."""
    if isinstance(x, (list, tuple)):
        return max(abs_max(part) for part in x)
    return float(x.detach().double().abs().max())


def max_abs_diff(a: torch.Tensor | Sequence[torch.Tensor], b: torch.Tensor | Sequence[torch.Tensor]) -> float:
    """Largest absolute difference of two tensors (or of matching sequences), computed in float64."""
    if isinstance(a, (list, tuple)):
        return max(max_abs_diff(x, y) for x, y in zip(a, b, strict=True))
    return float((a.detach().double() - b.detach().double()).abs().max())


class Comparison:
    """Differences between our outputs and the official ones, each with the official output's magnitude.

    ``max_abs_diff[name]`` is the largest absolute difference, ``reference_magnitude[name]`` the largest
    absolute official value (for a loss: its value), so a difference can be read against the size of what
    differs; only differences are checked against the tolerance.
    """

    def __init__(self) -> None:
        self.max_abs_diff: dict[str, float] = {}
        self.reference_magnitude: dict[str, float] = {}

    def add(self, name: str, ours, official) -> None:
        self.max_abs_diff[name] = max_abs_diff(ours, official)
        self.reference_magnitude[name] = abs_max(official)

    def result(self, tolerance: float = PARITY_TOLERANCE) -> dict:
        return {"tolerance": tolerance, "pass": all(v <= tolerance for v in self.max_abs_diff.values()),
                "max_abs_diff": self.max_abs_diff, "reference_magnitude": self.reference_magnitude}


@contextlib.contextmanager
def scripted_randomness(queue: Sequence[torch.Tensor] = (), *, randn_from_queue: bool = False,
                        randn: torch.Tensor | None = None, randint: torch.Tensor | None = None,
                        uniform: float | None = None) -> Iterator[None]:
    """Make the official code's random draws return given values, so both codes see the same noise.

    ``torch.randn_like`` (and ``torch.randn`` with ``randn_from_queue``) return the tensors of ``queue`` in
    call order, zeros once it is used up; otherwise ``torch.randn`` returns ``randn``; ``torch.randint``
    returns ``randint`` and ``random.random`` returns ``uniform`` when given.
    """
    pending = list(queue)
    saved = torch.randn_like, torch.randn, torch.randint, random.random

    def next_like(x, *args, **kwargs):
        return pending.pop(0).reshape(x.shape).clone() if pending else torch.zeros_like(x)

    def next_draw(*args, **kwargs):
        return pending.pop(0).clone()

    torch.randn_like = next_like
    if randn_from_queue:
        torch.randn = next_draw
    elif randn is not None:
        torch.randn = lambda *args, **kwargs: randn.clone()
    if randint is not None:
        torch.randint = lambda *args, **kwargs: randint.clone()
    if uniform is not None:
        random.random = lambda: uniform
    try:
        yield
    finally:
        torch.randn_like, torch.randn, torch.randint, random.random = saved
