"""Model cards rendered from the templates in `model_cards/` with run metadata."""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn


def _template(name: str) -> str:
    return resources.files("hf_scratchgpt.model_cards").joinpath(f"{name}.md").read_text(encoding="utf-8")


def template_fields(name: str) -> set[str]:
    """The `{field}` placeholders of template `name`."""
    return {field for _, field, _, _ in string.Formatter().parse(_template(name)) if field}


def render_card(template: str, /, **fields: Any) -> str:
    """Fill the template named `template` (e.g. "model"); every placeholder must be given.

    Raises:
        KeyError: naming the placeholders that have no value.
    """
    missing = template_fields(template) - fields.keys()
    if missing:
        raise KeyError(f"model card template {template!r} needs values for {sorted(missing)}")
    return _template(template).format_map(fields)


def model_card_fields(model: nn.Module, path: str | Path, command: str, weights: str, provenance: str) -> dict:
    """The standard fields of the `model` template for a ScratchGPT model saved at `path`."""
    from . import __version__

    cfg = model.config
    return {
        "name": Path(path).name,
        "package_version": __version__,
        "command": command,
        "architecture": type(model).__name__,
        "num_parameters": f"{model.num_parameters():,}",
        "n_layers": cfg.n_layers,
        "n_heads": cfg.n_heads,
        "emb_dim": cfg.emb_dim,
        "context_length": cfg.context_length,
        "vocab_size": cfg.vocab_size,
        "weights": weights,
        "path": str(path),
        "provenance": provenance,
    }
