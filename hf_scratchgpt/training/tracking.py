"""Metrics: a dependency-free JSONL tracker for accelerate, and the plot of the loss and a task metric."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from accelerate.tracking import GeneralTracker, on_main_process
from matplotlib.figure import Figure


class JSONLTracker(GeneralTracker):
    """Appends one JSON object per `log` call to `<dir>/metrics.jsonl` (always on, main process only)."""

    name = "jsonl"
    requires_logging_directory = True
    main_process_only = True

    def __init__(self, run_name: str, logging_dir: str | Path) -> None:
        # no @on_main_process here: it would initialise accelerate's process state before the
        # Accelerator, which then cannot become a multi-process CPU group
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self) -> Path:
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        self._write({"event": "config", "config": values})

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs: Any) -> None:
        self._write({"step": step, "time": time.time(), **values})

    def _write(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")


def read_metrics(path: str | Path) -> list[dict]:
    """The logged records of a run (skipping the config record)."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("event") != "config":
            records.append(record)
    return records


def truncate_metrics(path: str | Path, step: int) -> None:
    """Drop the records logged after `step` (a resumed run logs those steps again), atomically."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = [line for line in lines if (json.loads(line).get("step") or 0) <= step]
    if len(keep) < len(lines):
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        tmp.replace(path)


def plot_losses(metrics_path: str | Path, out_png: str | Path, metric: str = "perplexity") -> Path | None:
    """Train/validation loss and `metric` (logged as train_/val_ values) against optimizer steps (and tokens seen).

    Returns None if nothing was logged.
    """
    evals = [r for r in read_metrics(metrics_path) if "val_loss" in r or "train_loss" in r]
    if not evals:
        return None
    fig = Figure(figsize=(11, 4))  # no pyplot: no GUI backend, nothing global
    axes = fig.subplots(1, 2)
    steps = [r["step"] for r in evals]
    for ax, name in zip(axes, ("loss", metric)):
        for split, style in (("train", "-"), ("val", "--")):
            points = [(r["step"], r[f"{split}_{name}"]) for r in evals if r.get(f"{split}_{name}") is not None]
            if points:
                marker = "o" if len(points) < 3 else None  # one evaluation is a point, not an invisible line
                ax.plot(*zip(*points), style, marker=marker, label=f"{split} {name}")
    axes[0].set_ylabel("loss")
    axes[1].set_ylabel(metric)
    if metric == "perplexity":
        axes[1].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("optimizer step")
        ax.legend()
        ax.grid(alpha=0.3)
    tokens = [r.get("tokens_seen") for r in evals]
    if all(t is not None for t in tokens) and len(steps) > 1 and steps[-1] > 0:
        top = axes[0].secondary_xaxis(
            "top", functions=(lambda s: s * tokens[-1] / steps[-1], lambda t: t * steps[-1] / max(tokens[-1], 1))
        )
        top.set_xlabel("tokens seen")
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    return Path(out_png)
