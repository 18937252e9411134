"""Checkpoints: a normal Hugging Face folder plus the accelerate state, written atomically.

Layout: `OUT/checkpoints/step-000100/` holds config.json, model.safetensors, tokenizer files,
generation_config.json, `trainer_state.json` (step, epoch, batch position, tokens seen, early stopping)
and `accelerate/` (optimizer, scheduler, RNG states of every process). It is written under a
`.partial` name and renamed when complete, so a crash never leaves a checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class TrainState:
    """Where a run is: optimizer steps done, epoch, micro-batches done in it, tokens seen, early-stopping record."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    tokens_seen: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    train_seconds: float = 0.0  # wall time of the steps done, summed over resumed invocations

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_file(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under `root` (those with a trainer state), oldest first."""
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()
    ]
    return [p for _, p in sorted(found)]


def save_checkpoint(
    acc: Accelerator, root: Path, state: TrainState, write_folder: Callable[[Path], None], keep_last: int
) -> Path:
    """Save on every process (accelerate writes one RNG file per rank); rename when complete."""
    final = root / f"step-{state.step:06d}"
    partial = root / f".step-{state.step:06d}.partial"
    if acc.is_main_process:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(partial / "accelerate"))
    acc.wait_for_everyone()  # every rank's RNG file is written before the folder is renamed
    if acc.is_main_process:
        write_folder(partial)
        (partial / STATE_FILE).write_text(state.to_json(), encoding="utf-8")  # written last
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in complete_checkpoints(root)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


def find_resume_checkpoint(resume: str | None, root: Path) -> Path | None:
    """`auto`: the latest complete checkpoint under `root` (None if there is none); else that path.

    Raises:
        FileNotFoundError: A named checkpoint that does not exist or is incomplete.
    """
    if resume is None:
        return None
    if resume == "auto":
        found = complete_checkpoints(root)
        return found[-1] if found else None
    path = Path(resume)
    if not (path / STATE_FILE).is_file() or not (path / "accelerate").is_dir():
        raise FileNotFoundError(f"{path} is not a complete checkpoint (no {STATE_FILE} or accelerate/ in it)")
    return path
