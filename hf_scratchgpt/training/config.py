"""The typed configuration of `scratchgpt pretrain`: a dataclass, YAML recipes and `--key value` overrides.

A recipe is a YAML mapping of `PretrainConfig` fields. The command line may name a recipe with
`--config` and override any field with `--field-name value`; unknown fields are rejected with the
list of valid ones, and values are converted to the field's type (so `--lr abc` fails clearly).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

MIXED_PRECISION = ("no", "bf16", "fp16")
LR_SCHEDULES = ("cosine", "constant")


@dataclass
class PretrainConfig:
    """Everything a pretraining run depends on (saved beside its outputs as `config.yaml`).

    Attributes mirror the command-line options: `batch_size` -> `--batch-size`.
    """

    # data
    data: list[str] = field(default_factory=lambda: ["builtin"])
    text_field: str = "text"
    val_fraction: float = 0.1
    split_by: str = "characters"
    stride: int | None = None
    # tokenizer
    tokenizer: str | None = None
    vocab_size: int | None = None  # trained tokenizer: 4096; a given tokenizer: its size
    # model
    preset: str = "tiny"
    context_length: int | None = None
    drop_rate: float | None = None
    qkv_bias: bool | None = None
    tie_word_embeddings: bool = False
    init_scheme: str = "gpt2"
    attn_implementation: str = "sdpa"
    # optimisation
    epochs: int = 1
    max_steps: int | None = 600
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    lr_schedule: str = "cosine"
    warmup_steps: int = 30
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    clip_grad: float | None = 1.0
    mixed_precision: str = "no"
    seed: int = 123
    # the book's chapter-5 loop, draw for draw: (input, target) windows with max_length targets, a shuffle
    # and evaluation batches drawn from the global RNG, weight decay on every parameter, evaluation after
    # steps 1, 1 + eval_every, ...; one process, no mid-run resume
    book_mode: bool = False
    # evaluation, samples, logging
    eval_every: int = 100
    eval_batches: int | None = None
    sample_prompt: str = "The"
    sample_tokens: int = 30
    log_with: list[str] = field(default_factory=list)
    # outputs
    out: str | None = None
    name: str = "tiny-builtin"
    save_every: int | None = 200
    keep_last: int = 2
    resume: str | None = None
    overwrite: bool = False

    def validate(self) -> None:
        """Raise `ValueError` naming the first field whose value cannot work."""
        positive = ["epochs", "batch_size", "grad_accum", "eval_every", "keep_last", "sample_tokens"]
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("max_steps", "save_every", "context_length", "stride", "eval_batches", "vocab_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (or null), got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr!r}")
        if self.warmup_steps < 0 or self.weight_decay < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_steps and weight_decay must be >= 0 and min_lr_ratio in [0, 1]")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be > 0 (or null), got {self.clip_grad!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not self.data:
            raise ValueError("data: give at least one corpus source")
        if self.book_mode and self.resume is not None:
            raise ValueError(
                "book_mode cannot resume: the book's shuffle is drawn from the global RNG when an epoch "
                "starts, so a resumed run would see another order; drop --resume or --book-mode"
            )

    @property
    def out_dir(self) -> Path:
        """`out`, or `runs/<name>`."""
        return Path(self.out) if self.out else Path("runs") / self.name

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def convert(name: str, value: Any, tp: Any) -> Any:
    """Convert a YAML or command-line value to the field type `tp`; errors name the field."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return convert(name, value, args[0])
    if origin is list:
        (item,) = typing.get_args(tp)
        items = value if isinstance(value, list) else [value]
        return [convert(name, v, item) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected {tp.__name__}, got {value!r}")
        try:
            converted = tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name}: expected int, got {value!r}")
        return converted
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ValueError(f"{name}: expected text, got {value!r}")
        return str(value)
    return value


def from_mapping(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build `cls` from a mapping; unknown keys raise `ValueError` listing the valid ones."""
    types_ = _field_types(cls)
    unknown = sorted(set(values) - set(types_))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(types_)}")
    return cls(**{k: convert(k, v, types_[k]) for k, v in values.items()})


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe file as a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of options, got {type(data).__name__}")
    return data


def parse_overrides(cls: type, argv: list[str]) -> tuple[str | None, dict[str, Any]]:
    """Split `[--config FILE] [--key value ...]` into the recipe path and raw overrides.

    List fields take every value up to the next `--option`; `--flag` alone means true for a bool field
    and `--no-flag` false.
    """
    types_ = _field_types(cls)
    config, overrides, i = None, {}, 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--"):
            raise ValueError(f"unexpected argument {arg!r}; options look like --name value")
        key = arg[2:].replace("-", "_")
        values = []
        i += 1
        while i < len(argv) and not argv[i].startswith("--"):
            values.append(argv[i])
            i += 1
        if key == "config":
            if len(values) != 1:
                raise ValueError("--config takes one recipe file")
            config = values[0]
            continue
        if key.startswith("no_") and key[3:] in types_ and types_[key[3:]] is bool and not values:
            overrides[key[3:]] = False
            continue
        if key not in types_:
            raise ValueError(
                f"unknown option --{arg[2:]}; valid options: "
                + ", ".join("--" + k.replace("_", "-") for k in sorted(types_))
            )
        tp = types_[key]
        is_list = typing.get_origin(tp) is list
        if not values:
            if tp is bool:
                values = ["true"]
            else:
                raise ValueError(f"--{arg[2:]} needs a value")
        if len(values) > 1 and not is_list:
            raise ValueError(f"--{arg[2:]} takes one value, got {values}")
        overrides[key] = values if is_list else values[0]
    return config, overrides


def resolve_config(cls: type, argv: list[str]) -> Any:
    """The effective configuration: dataclass defaults < recipe (`--config`) < command-line overrides."""
    config, overrides = parse_overrides(cls, argv)
    values = load_recipe(config) if config else {}
    values.update(overrides)
    cfg = from_mapping(cls, values, config or "command line")
    cfg.validate()
    return cfg
