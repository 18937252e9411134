"""Checks every rendered model card must pass: its header as the Hub reads it, and no template text left."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import ModelCard

LEFTOVERS = ("{{", "}}", "{%", "%}", "[More Information Needed]", "<placeholder>", "None |", "| None")


def check_card(
    folder: Path,
    *,
    pipeline_tag: str,
    library_name: str = "transformers",
    datasets: list[str] | None = None,
    base_model: str | None = None,
    metrics: set[str] = frozenset(),
) -> ModelCard:
    """Load `folder/README.md` as huggingface_hub does and check its header fields and body."""
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == library_name and data.pipeline_tag == pipeline_tag
    assert data.license == "apache-2.0" and {"hf_scratchgpt", "scratchgpt"} <= set(data.tags)
    assert data.datasets == datasets
    assert data.base_model == base_model
    found = {r.metric_type for r in data.eval_results or []}
    assert found == set(metrics), found
    for r in data.eval_results or []:
        assert isinstance(r.metric_value, float) and r.dataset_name and r.task_type == pipeline_tag
    text = card.text
    for leftover in LEFTOVERS:
        assert leftover not in text, f"{leftover!r} left in the card of {folder}"
    for section in ("## Use", "## Intended use and limitations"):
        assert section in text
    return card
