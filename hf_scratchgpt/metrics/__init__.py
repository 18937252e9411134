"""`evaluate` metrics shipped inside the package, loaded offline from their folders (never from the Hub).

Layout: one folder per metric, `metrics/<name>/<name>.py`, holding one `evaluate.Metric` subclass written with numpy
and the standard library only; that is what `evaluate.load(<folder>)` expects of a local path. Each folder also has an
(empty) `__init__.py`, so that setup.py's `find_packages` ships the script in the wheel. A new metric is one more such
folder; `available_metrics()` finds it.

Shipped: `accuracy`, `f1`, `confusion_matrix` (class ids) and `exact_match`, `token_f1`, `rouge_l` (generated texts
against reference texts; `token_f1` and `rouge_l` tokenise alike: lowercase, punctuation deleted, whitespace split).

The scripts are not imported as part of the package: `evaluate.load` copies a script alone into HF_MODULES_CACHE
(`$HF_HOME/modules/evaluate_modules/metrics/<name>/<hash of the script>/`) and imports it from there, so a script
imports only evaluate, datasets, numpy and the standard library (no relative imports). Loading reads and hashes the
script and is quick (about 10-20 ms once `evaluate` is imported); `compute` keeps its inputs in an Arrow file under
`$HF_HOME/metrics/<name>/` unless the metric is loaded with `keep_in_memory=True`.

- `metric_path(name)`, `load_metric(name, **kwargs)`: one metric, as a fresh `evaluate` module.
- `classification_metrics(predictions, references, labels)`: accuracy, F1 and the confusion matrix of a classifier.
- `generation_metrics(predictions, references)`: exact match, token F1 and ROUGE-L of generated texts.
"""

import functools
from pathlib import Path
from typing import Any

import evaluate
import numpy as np

METRICS_DIR = Path(__file__).resolve().parent


def available_metrics() -> list[str]:
    """The names of the shipped metrics: the folders of METRICS_DIR that hold a `<folder name>.py` script."""
    return sorted(script.parent.name for script in METRICS_DIR.glob("*/*.py") if script.stem == script.parent.name)


def metric_path(name: str) -> Path:
    """The folder of the shipped metric `name` (what `evaluate.load` takes); a ValueError names the choices."""
    if name not in available_metrics():
        raise ValueError(f"unknown metric {name!r}: the package ships {', '.join(available_metrics())}")
    return METRICS_DIR / name


def load_metric(name: str, **kwargs: Any) -> evaluate.EvaluationModule:
    """`evaluate.load` of the shipped metric `name`, offline; `kwargs` go to `evaluate.load` (e.g. keep_in_memory)."""
    return evaluate.load(str(metric_path(name)), **kwargs)


@functools.cache
def _shared_metric(name: str) -> evaluate.EvaluationModule:
    """One in-memory instance per metric and process, for the one-shot `compute` calls of the helpers below."""
    return load_metric(name, keep_in_memory=True)


def classification_metrics(predictions: Any, references: Any, labels: list[int]) -> dict[str, Any]:
    """Accuracy, F1 and the confusion matrix of a classifier's predicted class ids, through the metric modules.

    Args:
        predictions, references: The predicted and true class ids (lists or 1-D arrays of ints, equally long).
        labels: The classifier's classes, distinct; the matrix's row/column order, and the classes macro F1 averages
            over (a class absent from the data counts with F1 0). Every prediction and reference must be one of them.

    Returns:
        {"accuracy": float, "f1_macro": float, "f1_per_class": [float, in `labels` order],
        "confusion_matrix": nested list (rows true, columns predicted)},
        plus "f1": the binary F1 of class 1 when there are two labels (of `labels[1]` if 1 is not one of them).
    """
    predictions, references = np.asarray(predictions).reshape(-1), np.asarray(references).reshape(-1)
    labels = [int(label) for label in labels]
    if not labels or len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct class ids, at least one: {labels}")
    if predictions.size != references.size:
        raise ValueError(f"{predictions.size} predictions for {references.size} references")
    if predictions.size == 0:
        raise ValueError("no predictions to score")
    unknown = sorted(set(np.union1d(predictions, references).tolist()) - set(labels))
    if unknown:
        raise ValueError(f"classes {unknown} in the predictions or references are not among the labels {labels}")
    data = {"predictions": predictions.tolist(), "references": references.tolist()}
    results = {
        "accuracy": _shared_metric("accuracy").compute(**data)["accuracy"],
        "f1_macro": _shared_metric("f1").compute(**data, average="macro", labels=labels)["f1"],
        "f1_per_class": [float(x) for x in _shared_metric("f1").compute(**data, average=None, labels=labels)["f1"]],
    }
    if len(labels) == 2:
        pos_label = 1 if 1 in labels else labels[1]
        results["f1"] = _shared_metric("f1").compute(**data, average="binary", pos_label=pos_label)["f1"]
    results["confusion_matrix"] = _shared_metric("confusion_matrix").compute(**data, labels=labels)["confusion_matrix"]
    return results


def generation_metrics(predictions: list[str], references: list[str]) -> dict[str, float]:
    """Exact match, token F1 and ROUGE-L of generated texts against their references, through the metric modules.

    Each metric is the mean over the examples of a per-example score; see the metric scripts for the exact rules.
    exact_match compares the texts stripped of surrounding whitespace, case included; token_f1 and rouge_l compare
    tokens (lowercase, punctuation deleted, whitespace split).

    Args:
        predictions: The generated texts (e.g. the responses of a fine-tuned model, prompt removed).
        references: The reference texts, one per prediction, in the same order.

    Returns:
        {"exact_match": float, "token_f1": float, "rouge_l": float}, each between 0 and 1.

    Raises:
        ValueError: The two lists differ in length, are empty, or hold something that is not a string.
    """
    predictions, references = list(predictions), list(references)
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not predictions:
        raise ValueError("no predictions to score")
    for side, texts in (("predictions", predictions), ("references", references)):
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"{side}[{i}] is {type(text).__name__} {text!r}, expected a string")
    return {
        name: float(_shared_metric(name).compute(predictions=predictions, references=references)[name])
        for name in ("exact_match", "token_f1", "rouge_l")
    }


__all__ = [
    "METRICS_DIR",
    "available_metrics",
    "classification_metrics",
    "generation_metrics",
    "load_metric",
    "metric_path",
]
