"""Time to quality of the main job: validation bits per byte against wall time, today's default vs the old one.

`scratchgpt pretrain` with no arguments (the default run) and with the options that were its default
before the built-in corpus, vocabulary, learning rate, dropout and evaluation were chosen by
measurement (`OLD_DEFAULT`), each in its own process, one after the other (`--rounds` pairs,
alternating which goes first). Both read the same held-out text: the last 10 % of the pydoc topics
(`builtin`); the docstrings the new default adds only train (`train:builtin-docstrings`). Both corpora
are written into the shared cache before the first run, so neither pays for building them.

Each evaluation's validation bits per byte is paired with the seconds since the process started
(its `metrics.jsonl` time minus the start), giving a curve per run. The headline compares the two at
the wall time the old default takes to finish: its final bits per byte against the default's last
evaluation by then (its final one when it finishes sooner). The ratio is old bpb / new bpb; the
target, at least 15 % lower bits per byte, is a ratio of 1 / 0.85.

Usage: python -m benchmarks.bench_pretrain_quality [--rounds 1] [--quick] [--out DIR]
Writes DIR/pretrain_quality.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import add_common_args, headline, ratio, save
from hf_scratchgpt.training.tracking import read_metrics

OLD_DEFAULT = [  # `scratchgpt pretrain`'s defaults before this benchmark chose new ones
    "--data", "builtin", "--vocab-size", "4096", "--lr", "1e-3", "--drop-rate", "0.1", "--eval-batches", "null",
    "--sample-temperature", "0",
]  # fmt: skip
QUICK = ["--max-steps", "4", "--eval-every", "2", "--context-length", "32", "--batch-size", "4", "--save-every", "null"]
TARGET = 1 / 0.85


def run(name: str, args: list[str], work: Path, home: Path) -> dict[str, Any]:
    """One `scratchgpt pretrain` in a fresh process: its wall time and (seconds, val bpb) per evaluation."""
    out = work / name
    command = [sys.executable, "-m", "hf_scratchgpt", "pretrain", *args, "--out", str(out), "--overwrite"]
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    start = time.time()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - start
    evals = [r for r in read_metrics(out / "metrics.jsonl") if "val_bits_per_byte" in r]
    curve = [(r["time"] - start, r["val_bits_per_byte"]) for r in evals]
    return {"wall_s": wall, "curve": curve, "final_bpb": curve[-1][1], "sample": evals[-1].get("sample", "")}


def at_time(curve: list[tuple[float, float]], seconds: float) -> float:
    """The curve's bits per byte at `seconds`: its last evaluation by then (the first one if none yet)."""
    done = [bpb for t, bpb in curve if t <= seconds]
    return done[-1] if done else curve[0][1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="pairs of runs (the order alternates)")
    add_common_args(parser)
    args = parser.parse_args(argv)
    extra = QUICK if args.quick else []
    runs: dict[str, list[dict[str, Any]]] = {"default": [], "old default": []}
    with tempfile.TemporaryDirectory(prefix="pretrain-quality-") as tmp:
        work, home = Path(tmp), Path(tmp) / "hf-home"
        code = "from hf_scratchgpt.data.sources import BUILTINS; [make() for make in BUILTINS.values()]"
        subprocess.run([sys.executable, "-c", code], env={**os.environ, "HF_HOME": str(home)}, check=True)
        for i in range(args.rounds):
            order = [("default", extra), ("old default", OLD_DEFAULT + extra)]
            for name, options in order[:: 1 if i % 2 == 0 else -1]:
                done = run(name.replace(" ", "-"), options, work, home)
                runs[name].append(done)
                print(f"{name}: {done['wall_s']:.0f} s, val bpb {done['final_bpb']:.4f}", flush=True)
    old_bpb = [r["final_bpb"] for r in runs["old default"]]
    new_bpb = [at_time(new["curve"], old["wall_s"]) for old, new in zip(runs["old default"], runs["default"])]
    for name, rs in runs.items():
        for r in rs:
            points = ", ".join(f"{t:.0f} s: {b:.4f}" for t, b in r["curve"])
            print(f"{name} ({r['wall_s']:.0f} s): {points}\n  sample: {r['sample']!r}")
    row = headline(
        "pretraining", "default `scratchgpt pretrain`: validation bits per byte by the old default's wall time",
        new_bpb[0], "old default", old_bpb[0], ratio(old_bpb, new_bpb), "bpb", TARGET,
    )  # fmt: skip
    summary = {"old_default": OLD_DEFAULT, "quick_options": extra, "runs": runs, "new_bpb_at_old_wall": new_bpb}
    print(f"old / new bits per byte at the same wall time: {row['ratio']:.3f} (target {TARGET:.3f})")
    print(save("pretrain_quality", args.out, summary, [row]))


if __name__ == "__main__":
    main()
