"""What every fine-tuning task shares: the starting model folder and the train modes, LoRA included.

A fine-tuning task (classification now; instruction and preference tuning next) starts from a saved
ScratchGPT folder (`--model`) and trains some of its parameters (`--train-mode`):

- `all`: every parameter.
- `last-block`: the book's chapter 6: everything frozen but the last transformer block, the final
  LayerNorm and the task's head.
- `head`: only the task's head.
- `lora`: LoRA adapters (`--rank`, `--alpha`) on the body's linear layers (`hf_scratchgpt.lora`, in
  peft's layout), the task's head trained in full. Every model folder of the run (checkpoints,
  `best/`, `final/`) holds the merged model, loadable without peft, and in `adapter/` the adapter in
  peft's format, naming its base model (`PeftModel.from_pretrained(base, "OUT/final/adapter")`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub import EvalResult
from torch import nn
from transformers import PretrainedConfig
from transformers.utils import logging as hf_logging

from ..cards import data_name, model_card
from ..folders import destination
from ..lora import (
    check_rank_alpha,
    linear_names,
    load_lora_adapter,
    merge_and_unload,
    replace_linear_with_lora,
    save_lora_adapter,
    trainable_report,
)
from ..model import ScratchGPTConfig
from ..paths import model_folder_or_hub
from .config import TrainConfig
from .task import Task

TRAIN_MODES = ("all", "last-block", "head", "lora")
ADAPTER_DIR = "adapter"


@dataclass
class FinetuneConfig(TrainConfig):
    """The options of every fine-tuning verb: the shared run's, plus the starting model and what trains.

    Attributes:
        model: The model to start from: a ScratchGPT folder saved by this package (e.g. runs/NAME/final) or a Hub id.
        train_mode: What trains: all, last-block (the last block, final norm and head: the book), head, or lora.
        rank: LoRA rank (train_mode lora).
        alpha: LoRA alpha (train_mode lora); the update is scaled by alpha / rank.
        lora_dropout: Dropout on the LoRA layers' inputs (train_mode lora).
        target_modules: Linear layers that get LoRA adapters, as names or name suffixes such as W_query
            (null: every linear layer of the transformer body).
        drop_rate: Dropout of the model while fine-tuning (null: the saved model's).
    """

    model: str | None = None
    train_mode: str = "all"
    rank: int = 16
    alpha: float = 16.0
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None
    drop_rate: float | None = None

    TRAIN_MODES: ClassVar[tuple[str, ...]] = TRAIN_MODES
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("model",)

    def validate(self) -> None:
        super().validate()
        if not self.model:
            raise ValueError("model: give the model folder to fine-tune (--model runs/NAME/final)")
        if self.train_mode not in self.TRAIN_MODES:
            raise ValueError(f"train_mode must be one of {self.TRAIN_MODES}, got {self.train_mode!r}")
        if self.train_mode == "lora":
            check_rank_alpha(self.rank, self.alpha)
            if not 0 <= self.lora_dropout < 1:
                raise ValueError(f"lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
            if self.push_to_hub is not None and Path(self.model).exists():
                raise ValueError(
                    f"--push-to-hub with --train-mode lora pushes the adapter, which must name a base model on the "
                    f"Hub, and --model {self.model} is a local folder: push it first (scratchgpt push {self.model} "
                    "REPO_ID) and fine-tune from its repo id, or push this run later with scratchgpt push OUT REPO_ID "
                    "--base-model BASE_REPO_ID"
                )
        if self.drop_rate is not None and not 0 <= self.drop_rate < 1:
            raise ValueError(f"drop_rate must be in [0, 1), got {self.drop_rate!r}")

    def run_name(self, data: str | None, task: str) -> str:
        """`<model folder>-<data stem>-<task>`: a run folder named after what it starts from (`final` is skipped)."""
        model = Path(self.model.rstrip("/")) if self.model else Path("model")
        model_name = model.parent.name if model.name == "final" else model.name
        return f"{model_name}-{Path((data or 'data').rstrip('/')).stem}-{task}"


def scratchgpt_config(source: str) -> tuple[ScratchGPTConfig, str | Path]:
    """The config of the ScratchGPT model at `source` (a folder or Hub id) and where it is.

    Raises:
        FileNotFoundError: `source` is a local path without a model folder.
        ValueError: The folder holds another kind of model (its `model_type` is named).
    """
    where = model_folder_or_hub(source)
    values, _ = PretrainedConfig.get_config_dict(str(where))
    kind = values.get("model_type")
    if kind != ScratchGPTConfig.model_type:
        hint = "; convert it first with `scratchgpt convert-gpt2`" if kind == "gpt2" else ""
        raise ValueError(f"{source}: not a ScratchGPT model (its config.json has model_type {kind!r}){hint}")
    return ScratchGPTConfig.from_pretrained(str(where)), where


@contextlib.contextmanager
def quiet_loading() -> Iterator[None]:
    """Silence transformers' notes on a new head's weights ("newly initialized", unused `out_head`)."""
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def apply_train_mode(model: nn.Module, cfg: FinetuneConfig, head: tuple[str, ...]) -> dict[str, Any]:
    """Make the parameters of `cfg.train_mode` trainable (in place) and report the counts.

    Args:
        model: A ScratchGPT with a task head (its body is `model.transformer`).
        cfg: The run's train mode and LoRA options.
        head: Names of the task's head modules (always trained, in full).

    Returns:
        `trainable_report(model)`: trainable and total parameters and the trainable share.
    """
    mode = cfg.train_mode
    if mode == "lora":
        body = [n for n in linear_names(model) if n.startswith("transformer.")]
        targets = body if cfg.target_modules is None else list(cfg.target_modules)
        replace_linear_with_lora(model, cfg.rank, cfg.alpha, target_modules=targets, dropout=cfg.lora_dropout)
    for param in model.parameters():
        param.requires_grad = mode == "all" or (mode == "lora" and param.requires_grad)
    trained: list[nn.Module] = [model.get_submodule(name) for name in head]
    if mode == "last-block":
        trained += [model.transformer.trf_blocks[-1], model.transformer.final_norm]
    for module in trained:
        for param in module.parameters():
            param.requires_grad = True
    return trainable_report(model)


class FinetuneTask(Task):
    """A task that fine-tunes a saved ScratchGPT with a head (`head_modules`) in one of the train modes.

    Class attributes:
        head_modules: The task's head modules, trained in every mode (saved whole with a LoRA adapter).
        peft_task_type: peft's task type of the adapter (e.g. SEQ_CLS).
    """

    head_modules: ClassVar[tuple[str, ...]] = ()
    peft_task_type: ClassVar[str | None] = None
    config: FinetuneConfig

    def prepare(self, model: nn.Module, source: str | Path, verbose: bool = True) -> nn.Module:
        """Apply the train mode to the model loaded from `source`; says what trains when `verbose`."""
        self.base = source if isinstance(source, str) else str(Path(source).resolve())
        self.base_hub_id = source if isinstance(source, str) else None  # a str source is a Hub id
        self.trainable = apply_train_mode(model, self.config, self.head_modules)
        t = self.trainable
        if verbose:
            print(
                f"train mode {self.config.train_mode}: {t['trainable']:,} of {t['total']:,} parameters trainable "
                f"({t['percent']:.2f} %)"
            )
        return model

    def card_metadata(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        """Datasets and base model; tasks add their `model-index` results (`eval_results`)."""
        tags = ["lora"] if self.config.train_mode == "lora" else []
        found = self.eval_results(results or {})
        data = [data_name(self.config.data)]
        return {"datasets": data, "base_model": self.base_hub_id, "tags": tags, "results": found}

    def trainable_text(self) -> str:
        """The trainable parameters, for cards: `N of TOTAL (P %)`."""
        t = self.trainable
        return f"{t['trainable']:,} of {t['total']:,} ({t['percent']:.2f} %)"

    def adapter_note(self) -> str:
        """The card's sentence on what the weights are: the whole fine-tuned model, or base + merged LoRA update."""
        cfg = self.config
        if cfg.train_mode != "lora":
            return "The weights are the whole fine-tuned model."
        return (
            f"This run trained LoRA adapters (rank {cfg.rank}, alpha {cfg.alpha}) and merged them into these weights, "
            "which load without peft. The adapter alone, in peft's format, is in the run's `final/adapter/`; "
            "`scratchgpt push RUN_DIR REPO_ID --base-model BASE_REPO_ID` shares it as an adapter repo."
        )

    def eval_results(self, results: dict[str, Any]) -> list[EvalResult]:
        """The final evaluation as `model-index` results (default: none)."""
        return []

    def export(self, model: nn.Module) -> nn.Module:
        """LoRA: a merged copy (plain linear layers, loadable without peft); otherwise the model itself."""
        if self.config.train_mode != "lora":
            return model
        return merge_and_unload(copy.deepcopy(model))

    def write_extras(self, model: nn.Module, folder: Path) -> None:
        """LoRA: the adapter in peft's format in `folder/adapter`, naming the base model."""
        if self.config.train_mode == "lora":
            save_lora_adapter(
                model,
                folder / ADAPTER_DIR,
                base_model_name_or_path=self.base,
                modules_to_save=list(self.head_modules),
                task_type=self.peft_task_type,
            )
            cfg = self.config
            path = destination(folder) / ADAPTER_DIR
            meta = {
                "license": cfg.license, "base_model": self.base_hub_id, "datasets": [data_name(cfg.data)],
                "tags": ["lora", "peft"], "library_name": "peft",
            }  # fmt: skip
            card = model_card(
                "adapter", model, path, cfg.VERB, meta,
                rank=cfg.rank, alpha=cfg.alpha, target_modules=(
                    "the body's linear layers" if cfg.target_modules is None
                    else ", ".join(f"`{m}`" for m in cfg.target_modules)
                ),
                base_model=self.base, data=data_name(cfg.data), trainable=self.trainable_text(),
            )  # fmt: skip
            (folder / ADAPTER_DIR / "README.md").write_text(str(card), encoding="utf-8")

    def restore(self, model: nn.Module, folder: Path) -> None:
        if self.config.train_mode == "lora":
            load_lora_adapter(model, folder / ADAPTER_DIR)
        else:
            super().restore(model, folder)
