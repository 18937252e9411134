"""Model cards: the Jinja templates of `model_cards/` rendered with a run's metadata.

The YAML header is `huggingface_hub`'s `ModelCardData` (library_name, pipeline_tag, license,
datasets, base_model, tags and the `model-index` results); the body is a template of
`model_cards/` whose every placeholder must get a value (an unknown one is an error, never an
empty gap). Templates share parts with `{% include "_name.md" %}`; the result is a `ModelCard`.
"""

from __future__ import annotations

import platform
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from torch import nn

from . import __version__

SOURCE_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"  # a source tree that is not installed
DEFAULT_LICENSE = "apache-2.0"
TAGS = ("hf_scratchgpt", "scratchgpt")


def _template(name: str) -> str:
    """The text of template `name` (`name.md`): installed as `hf_scratchgpt.model_cards`, or from the source tree.

    Raises:
        FileNotFoundError: No such template.
    """
    try:
        folder = resources.files("hf_scratchgpt.model_cards")
    except ModuleNotFoundError:
        folder = SOURCE_TEMPLATES
    path = folder.joinpath(name if name.endswith(".md") else f"{name}.md")
    if not path.is_file():
        raise FileNotFoundError(f"no model card template {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8")


_ENV = jinja2.Environment(
    loader=jinja2.FunctionLoader(_template),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=False,  # an included part adds no blank line (it would end a Markdown table)
    autoescape=False,  # noqa: S701 (Markdown, not HTML)
)


def template_fields(name: str) -> set[str]:
    """The placeholders of template `name` and of the parts it includes (`card_data` is the header)."""
    source = _template(name)
    fields = jinja2.meta.find_undeclared_variables(_ENV.parse(source))
    for part in jinja2.meta.find_referenced_templates(_ENV.parse(source)):
        if part is not None:
            fields |= template_fields(part)
    return fields - {"card_data"}


def _is_classifier(model: nn.Module) -> bool:
    return "ForSequenceClassification" in type(model).__name__


def card_data(
    model: nn.Module,
    *,
    license: str = DEFAULT_LICENSE,  # noqa: A002 (the Hub's field name)
    base_model: str | None = None,
    datasets: list[str] | None = None,
    tags: list[str] | None = None,
    results: list[EvalResult] | None = None,
    model_name: str | None = None,
    library_name: str = "transformers",
) -> ModelCardData:
    """The header of a card for `model`: library, pipeline tag (from the model's class), license, data, base, results.

    Args:
        model: The model the folder holds (its class decides the pipeline tag).
        license: A Hub license id.
        base_model: The Hub id of the model this one was fine-tuned from (None: not a fine-tune, or a local base).
        datasets: Names of the training data (Hub ids where the data came from the Hub).
        tags: Tags besides `hf_scratchgpt`, `scratchgpt` and the pipeline tag.
        results: `model-index` results (they need `model_name`).
        model_name: The model's name in `model-index`.
        library_name: The library that loads the folder (peft for an adapter).
    """
    pipeline_tag = "text-classification" if _is_classifier(model) else "text-generation"
    return ModelCardData(
        library_name=library_name,
        pipeline_tag=pipeline_tag,
        license=license,
        base_model=base_model,
        datasets=datasets or None,
        tags=[*TAGS, pipeline_tag, *(tags or [])],
        eval_results=results or None,
        model_name=model_name if results else None,
    )


def data_name(spec: str | Path) -> str:
    """How a card names training data: a local file or folder by its name, anything else (a Hub id) as given."""
    return Path(spec).name if Path(spec).exists() else str(spec)


def result(task_type: str, data: str, split: str, metric: str, value: float) -> EvalResult:
    """One `model-index` result: `metric` (e.g. accuracy, loss) on `split` of the data named `data`."""
    return EvalResult(
        task_type=task_type,
        dataset_type=data,
        dataset_name=data,
        dataset_split=split,
        metric_type=metric,
        metric_name=f"{split} {metric}",
        metric_value=round(float(value), 4),
    )


def render_card(template: str, data: ModelCardData, /, **fields: Any) -> ModelCard:
    """Render template `template` (e.g. "model") under the header `data`; every placeholder must be given.

    Raises:
        KeyError: naming the placeholders that have no value.
    """
    missing = template_fields(template) - fields.keys()
    if missing:
        raise KeyError(f"model card template {template!r} needs values for {sorted(missing)}")
    body = _ENV.get_template(template if template.endswith(".md") else f"{template}.md").render(
        card_data=data.to_yaml(), **fields
    )
    return ModelCard(body.rstrip("\n") + "\n")


def hardware() -> str:
    """What this process computes on: the GPU's name, or the CPU's model and core count."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU: {cpu}, {torch.get_num_threads()} threads"


def standard_fields(model: nn.Module, path: str | Path, command: str) -> dict[str, Any]:
    """The fields every model card has: name, package version, command, architecture and sizes, load path.

    Sizes are read through transformers' standard config names, so ScratchGPT and GPT-2 configs alike work.
    """
    cfg = model.config
    return {
        "name": Path(path).name,
        "auto_class": "AutoModelForSequenceClassification" if _is_classifier(model) else "AutoModelForCausalLM",
        "package_version": __version__,
        "command": command,
        "architecture": type(model).__name__,
        "model_type": cfg.model_type,
        "num_parameters": f"{model.num_parameters():,}",
        "n_layers": cfg.num_hidden_layers,
        "n_heads": cfg.num_attention_heads,
        "emb_dim": cfg.hidden_size,
        "context_length": cfg.max_position_embeddings,
        "vocab_size": cfg.vocab_size,
        "path": str(path),
    }


def model_card(
    template: str,
    model: nn.Module,
    path: str | Path,
    command: str,
    meta: dict[str, Any] | None = None,
    **fields: Any,
) -> ModelCard:
    """Render template `template` for `model` saved at `path`: the standard fields plus `fields`.

    Args:
        template: Template name in `model_cards/`.
        model: The model of the folder.
        path: Where the folder is (its name is the card's title).
        command: The `scratchgpt` verb that wrote it.
        meta: Keyword arguments of `card_data` (license, base_model, datasets, tags, results).
        **fields: The template's own placeholders.
    """
    meta = dict(meta or {})
    meta.setdefault("model_name", Path(path).name)
    return render_card(template, card_data(model, **meta), **{**standard_fields(model, path, command), **fields})


__all__ = [
    "DEFAULT_LICENSE",
    "card_data",
    "data_name",
    "hardware",
    "model_card",
    "render_card",
    "result",
    "standard_fields",
]
