"""What every benchmark shares: interleaved timing, medians with their range, the machine, the result files.

A benchmark times its cases interleaved (A, B, C, A, B, C, ...) so that a slow moment of the machine
falls on every case alike, and reports medians with their range. Its headline rows compare ours with a
peer as a ratio of the per-round pair (round i of ours against round i of the peer), so a ratio's
range is the spread of the comparison itself. `python -m benchmarks` gathers the headlines of every
benchmark into one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SHARED_DATA = Path(os.environ.get("SCRATCHGPT_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
BOOK_INSTALL = "pip install --no-deps llms-from-scratch==1.0.19"  # the book's package, for its rows
LIBRARIES = ("torch", "transformers", "tokenizers", "tiktoken", "peft", "accelerate", "llms-from-scratch")


def add_common_args(parser: argparse.ArgumentParser, device: bool = False) -> None:
    """`--quick` (a smoke run: tiny sizes, one round), `--out` (the folder of the JSON result) and, for the
    benchmarks that can run on a GPU, `--device`."""
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round: checks that it runs")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the JSON result (default: results/)")
    if device:
        parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: where the models run")


def synchronizer(device: Any) -> Callable[[], None] | None:
    """What waits for a device's queued work (`torch.cuda.synchronize` on a GPU); None on the CPU."""
    import torch

    device = torch.device(device)
    return None if device.type == "cpu" else lambda: torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], sync: Callable[[], None] | None = None) -> float:
    """Seconds one call of `fn` takes (with `sync`, from idle to the end of the work it queued on a GPU)."""
    if sync:
        sync()
    start = time.perf_counter()
    fn()
    if sync:
        sync()
    return time.perf_counter() - start


def interleaved(
    cases: dict[str, Callable[[], Any]],
    rounds: int,
    warmup: int = 1,
    calls: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Time every case `rounds` times, the cases taking turns; each time is the mean of `calls` calls.

    Args:
        cases: Name -> a function doing one unit of work.
        rounds: Timed rounds.
        warmup: Untimed calls of every case first.
        calls: Calls per timed round (their mean is the round's time).
        sync: Waits for a GPU's queued work (`synchronizer`), so a round times the work and not its launch.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            times[name].append(timed(lambda fn=fn: [fn() for _ in range(calls)], sync) / calls)
    return times


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratio(ours: Sequence[float], peer: Sequence[float], higher_is_better: bool = True) -> dict[str, float]:
    """How many times better ours is than the peer, round by round (rates: ours/peer; times: peer/ours)."""
    pairs = [(o / p if higher_is_better else p / o) for o, p in zip(ours, peer, strict=True)]
    return spread(pairs)


def headline(
    benchmark: str,
    measure: str,
    ours: float,
    peer: str,
    peer_value: float,
    ratio_spread: dict[str, float],
    unit: str,
    target: float | None = None,
) -> dict[str, Any]:
    """One row of the summary table: ours vs a peer on one measure, with the ratio's range and target."""
    row = {
        "benchmark": benchmark,
        "measure": measure,
        "ours": ours,
        "peer": peer,
        "peer_value": peer_value,
        "ratio": ratio_spread["median"],
        "ratio_min": ratio_spread["min"],
        "ratio_max": ratio_spread["max"],
        "unit": unit,
        "target": target,
    }
    if target is not None:
        row["met"] = ratio_spread["median"] >= target
    return row


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The date, the CPU, its cores, torch's threads, the OS and the versions of the libraries measured."""
    import torch

    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": _cpu_model(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def save(name: str, out: Path, summary: dict[str, Any], headlines: list[dict[str, Any]]) -> Path:
    """Write `out/NAME.json`: the machine, the headline rows and the benchmark's own details."""
    path = out / f"{name}.json"
    write_text(path, json.dumps({"benchmark": name, "machine": machine(), "headlines": headlines, **summary}, indent=2))
    return path


def write_text(path: Path, text: str) -> None:
    """Write `text` to `path` (replacing it) through `folders.atomic_output_file`: never a partial file."""
    # imported here: a benchmark's parent process stays small (and torch-free) while its children are measured
    from hf_scratchgpt.folders import atomic_output_file

    with atomic_output_file(path, overwrite=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
