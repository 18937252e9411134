"""Model cards rendered from the templates in `model_cards/` with run metadata."""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path
from typing import Any

from torch import nn

from . import __version__

SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"  # a source tree that is not installed


def _template(name: str) -> str:
    """The text of template `name`: installed as `hf_scratchgpt.model_cards`, or from the source tree.

    Raises:
        FileNotFoundError: No such template.
    """
    try:
        folder = resources.files("hf_scratchgpt.model_cards")
    except ModuleNotFoundError:
        folder = SOURCE_TEMPLATES
    path = folder.joinpath(f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no model card template {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8")


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


def standard_fields(model: nn.Module, path: str | Path, command: str) -> dict[str, Any]:
    """The fields every model card has: name, package version, command, architecture and sizes.

    Sizes are read through transformers' standard config names, so ScratchGPT and GPT-2 configs alike work.
    """
    cfg = model.config
    return {
        "name": Path(path).name,
        "package_version": __version__,
        "command": command,
        "architecture": type(model).__name__,
        "num_parameters": f"{model.num_parameters():,}",
        "n_layers": cfg.num_hidden_layers,
        "n_heads": cfg.num_attention_heads,
        "emb_dim": cfg.hidden_size,
        "context_length": cfg.max_position_embeddings,
        "vocab_size": cfg.vocab_size,
        "path": str(path),
    }


def model_card(template: str, model: nn.Module, path: str | Path, command: str, **fields: Any) -> str:
    """Render template `template` for `model` saved at `path`: the standard fields plus `fields`."""
    return render_card(template, **{**standard_fields(model, path, command), **fields})
