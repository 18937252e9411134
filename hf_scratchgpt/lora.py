"""LoRA from scratch (the book's appendix E), in peft's layout so adapters move between the two.

A LoRA layer adds `scaling * B(A(dropout(x)))` to a frozen linear layer, with `A` of shape
`(rank, in_features)` (Kaiming-uniform, a=sqrt(5)) and `B` of shape `(out_features, rank)` (zeros,
so a fresh adapter changes nothing); `scaling = alpha / rank` (rsLoRA: `alpha / sqrt(rank)`).
The arithmetic follows peft's `lora.Linear` operation for operation, so outputs, gradients and
merged weights are bit-identical to peft's for the same A and B. The book's own variant (A drawn on
an `(in, r)` shape, scaling `alpha`) is `hf_scratchgpt.book.appendix_e`, built on these classes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

PEFT_PREFIX = "base_model.model."
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoRALayer(nn.Module):
    """The low-rank update `scaling * (dropout(x) @ A.T @ B.T)`.

    Args:
        in_dim: Input features of the wrapped layer.
        out_dim: Output features of the wrapped layer.
        rank: Rank r of the update (> 0).
        alpha: Scale numerator (> 0); the update is multiplied by alpha / r.
        dropout: Dropout on the layer's input before A (peft's `lora_dropout`).
        use_rslora: Scale by alpha / sqrt(r) instead (rank-stabilised LoRA).
    """

    def __init__(
        self, in_dim: int, out_dim: int, rank: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False
    ) -> None:
        super().__init__()
        check_rank_alpha(rank, alpha)
        self.rank, self.alpha, self.use_rslora = rank, alpha, use_rslora
        self.scaling = alpha / math.sqrt(rank) if use_rslora else alpha / rank
        self.A = nn.Parameter(torch.empty(rank, in_dim))  # (r, in)
        self.B = nn.Parameter(torch.zeros(out_dim, rank))  # (out, r)
        self.reset_A()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @torch.no_grad()
    def reset_A(self) -> None:
        """Draw A: Kaiming-uniform (a=sqrt(5)) on its `(r, in)` shape, as peft does."""
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    @property
    def peft_alpha(self) -> float:
        """The `lora_alpha` that gives peft this layer's scaling (peft scales by lora_alpha / r)."""
        return self.alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(self.dropout(x), self.A), self.B) * self.scaling

    def get_delta_weight(self) -> torch.Tensor:
        """The update as a weight, `(B @ A) * scaling`, shape `(out, in)`."""
        return (self.B @ self.A) * self.scaling


class LinearWithLoRA(nn.Module):
    """A frozen `nn.Linear` plus a `LoRALayer` (the book's wrapper); `merge()` folds the update in."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, dropout: float = 0.0, use_rslora: bool = False):
        super().__init__()
        self.linear = linear
        self.lora = self.make_lora(linear.in_features, linear.out_features, rank, alpha, dropout, use_rslora)
        self.lora.to(device=linear.weight.device, dtype=linear.weight.dtype)
        self.merged = False
        self.disabled = False  # `disable_adapters`: the forward is the base layer's

    @staticmethod
    def make_lora(in_dim: int, out_dim: int, rank: int, alpha: float, dropout: float, use_rslora: bool) -> LoRALayer:
        """The adapter this wrapper adds (a subclass may build another `LoRALayer`)."""
        return LoRALayer(in_dim, out_dim, rank, alpha, dropout, use_rslora)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged or self.disabled:
            return self.linear(x)
        return self.linear(x) + self.lora(x)

    def get_delta_weight(self) -> torch.Tensor:
        return self.lora.get_delta_weight()

    @torch.no_grad()
    def merge(self) -> None:
        """Add the update to the base weight (the forward then skips the adapter)."""
        if not self.merged:
            self.linear.weight.data += self.get_delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take the update back out of the base weight."""
        if self.merged:
            self.linear.weight.data -= self.get_delta_weight()
            self.merged = False


def check_rank_alpha(rank: Any, alpha: Any) -> None:
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA rank must be a positive integer, got {rank!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")


def lora_layers(model: nn.Module) -> dict[str, LinearWithLoRA]:
    """The model's LoRA-wrapped layers by module name."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LinearWithLoRA)}


def linear_names(model: nn.Module) -> list[str]:
    """Names of the model's `nn.Linear` modules (what `target_modules` can name)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and name]


def _matches(name: str, targets: str | Iterable[str] | None) -> bool:
    """peft's rule: a string is a regex matched in full; a list matches a name or a dotted suffix."""
    if targets is None:
        return True
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def mark_only_lora_as_trainable(model: nn.Module) -> None:
    """Freeze everything but the LoRA A and B matrices."""
    for name, param in model.named_parameters():
        param.requires_grad = ".lora." in f".{name}"


def replace_linear_with_lora(
    model: nn.Module,
    rank: int,
    alpha: float,
    target_modules: str | list[str] | None = None,
    dropout: float = 0.0,
    use_rslora: bool = False,
) -> nn.Module:
    """Wrap the chosen `nn.Linear` layers in `LinearWithLoRA` (in place) and freeze the rest.

    Args:
        model: Any module (ScratchGPT causal LM or classifier, or another model).
        rank: Rank of every update.
        alpha: Scale numerator of every update.
        target_modules: None for every linear layer (the book), a list of module names or name
            suffixes (`["W_query", "W_value"]`), or a regex matched against full names.
        dropout: Dropout on the adapters' inputs.
        use_rslora: Scale by alpha / sqrt(rank).

    Returns:
        The same model.

    Raises:
        ValueError: LoRA already applied, a bad rank/alpha, or targets that match no linear layer
            (the message lists the linear layers there are).
    """
    check_rank_alpha(rank, alpha)
    if lora_layers(model):
        raise ValueError(f"the model already has LoRA layers ({', '.join(list(lora_layers(model))[:4])}, ...)")
    chosen = [name for name in linear_names(model) if _matches(name, target_modules)]
    if not chosen:
        raise ValueError(
            f"target_modules {target_modules!r} match no linear layer; the linear layers are: "
            + ", ".join(linear_names(model))
        )
    for param in model.parameters():
        param.requires_grad = False
    for name in chosen:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, LinearWithLoRA(getattr(parent, child), rank, alpha, dropout, use_rslora))
    return model


@contextlib.contextmanager
def disable_adapters(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block the model computes as its base model: every unmerged adapter is skipped (peft's
    `disable_adapter()`); e.g. the reference model of preference tuning without a second copy in memory.

    Raises:
        ValueError: An adapter is merged (the base weights are not available as they are).
    """
    layers = [m for m in model.modules() if isinstance(m, LinearWithLoRA)]
    if any(layer.merged for layer in layers):
        raise ValueError("cannot disable merged LoRA adapters; unmerge them first")
    for layer in layers:
        layer.disabled = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.disabled = False


def merge_and_unload(model: nn.Module) -> nn.Module:
    """Merge every adapter into its base weight and put the plain `nn.Linear`s back (in place)."""
    for name, layer in lora_layers(model).items():
        layer.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.linear)
    return model


def trainable_report(model: nn.Module) -> dict[str, int | float]:
    """Trainable and total parameter counts (shared tensors counted once) and the trainable share."""
    seen: dict[int, nn.Parameter] = {}
    for param in model.parameters():
        seen.setdefault(id(param), param)
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return {"trainable": trainable, "total": total, "percent": 100.0 * trainable / total if total else 0.0}


# ----------------------------------------------------------------------------- peft's adapter format


def save_lora_adapter(
    model: nn.Module,
    out: str | Path,
    base_model_name_or_path: str | None = None,
    modules_to_save: list[str] | None = None,
    task_type: str | None = None,
) -> Path:
    """Write the adapters in peft's format (`adapter_config.json` + `adapter_model.safetensors`).

    `peft.PeftModel.from_pretrained(base, out)` loads the result; `target_modules` lists the full
    names of the wrapped layers, so peft wraps exactly those.

    Args:
        model: A model with LoRA layers.
        out: The adapter folder to write.
        base_model_name_or_path: The base model's folder or Hub id, recorded for peft and the Hub.
        modules_to_save: Modules trained in full and saved whole beside the adapters (peft's
            `modules_to_save`), e.g. `["score"]`, a classifier's new head.
        task_type: peft's task type, e.g. `"SEQ_CLS"` or `"CAUSAL_LM"` (None: a plain `PeftModel`).
    """
    layers = lora_layers(model)
    if not layers:
        raise ValueError("the model has no LoRA layers to save")
    first = next(iter(layers.values())).lora
    if any(
        (lay.lora.rank, lay.lora.peft_alpha, lay.lora.use_rslora) != (first.rank, first.peft_alpha, first.use_rslora)
        for lay in layers.values()
    ):
        raise ValueError("peft's format needs one rank/alpha for all layers; these adapters differ")
    dropout = first.dropout.p if isinstance(first.dropout, nn.Dropout) else 0.0
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "r": first.rank,
        "lora_alpha": first.peft_alpha,
        "lora_dropout": dropout,
        "use_rslora": first.use_rslora,
        "target_modules": sorted(layers),
        "bias": "none",
        "fan_in_fan_out": False,
        "init_lora_weights": True,
        "modules_to_save": list(modules_to_save) if modules_to_save else None,
        "base_model_name_or_path": base_model_name_or_path,
        "inference_mode": True,
    }
    tensors = {}
    for name, layer in layers.items():
        tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = layer.lora.A.detach().contiguous()
        tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = layer.lora.B.detach().contiguous()
    for module_name in modules_to_save or []:
        module = model.get_submodule(module_name)  # raises AttributeError naming a missing module
        for name, param in module.named_parameters():
            tensors[f"{PEFT_PREFIX}{module_name}.{name}"] = param.detach().contiguous()  # peft's key for them
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, out / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    (out / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return out


def load_lora_adapter(model: nn.Module, folder: str | Path) -> nn.Module:
    """Load an adapter saved by peft (or `save_lora_adapter`) into the scratch implementation.

    The layers named in the adapter file are wrapped (unless already wrapped) with the file's rank
    and alpha; A and B are copied in. Keys of `modules_to_save` (a trained classifier head) are copied
    into the matching base parameters.

    Raises:
        FileNotFoundError: The folder lacks adapter_config.json or adapter_model.safetensors.
        ValueError: Not a LoRA adapter, a layer the model does not have, or a tensor whose shape does
            not fit the base model (named, with both shapes).
    """
    folder = Path(folder)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder}: no {name} (expected a peft LoRA adapter folder)")
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder / ADAPTER_CONFIG}: peft_type is {config.get('peft_type')!r}, not 'LORA'")
    rank, alpha = config["r"], config["lora_alpha"]
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ValueError(f"{folder / ADAPTER_CONFIG}: per-layer rank/alpha patterns are not supported")
    tensors = load_file(folder / ADAPTER_WEIGHTS)
    pattern = re.compile(rf"^{re.escape(PEFT_PREFIX)}(.+)\.lora_([AB])\.weight$")
    lora_keys = {key: pattern.match(key) for key in tensors}
    modules = sorted({m.group(1) for m in lora_keys.values() if m})
    existing = lora_layers(model)
    if existing:
        if sorted(existing) != modules:
            raise ValueError(f"{folder}: the model's LoRA layers differ from the adapter's ({len(modules)} layers)")
    else:
        absent = [m for m in modules if m not in linear_names(model)]
        if absent:
            raise ValueError(f"{folder}: the adapter targets layers this model lacks: {', '.join(absent[:6])}")
        dropout, rslora = config.get("lora_dropout", 0.0), config.get("use_rslora", False)
        replace_linear_with_lora(model, rank, alpha, target_modules=modules, dropout=dropout, use_rslora=rslora)
    layers = lora_layers(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            match = lora_keys[key]
            if match:
                target = getattr(layers[match.group(1)].lora, match.group(2))
            else:  # modules_to_save, e.g. a classifier head trained in full
                name = key.removeprefix(PEFT_PREFIX).replace(".modules_to_save.default", "")
                if name not in params:
                    raise ValueError(f"{folder}: tensor {key} matches no parameter of this model")
                target = params[name]
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(
                    f"{folder}: tensor {key} has shape {tuple(value.shape)} but the model needs {tuple(target.shape)}"
                )
            target.copy_(value)
    return model
