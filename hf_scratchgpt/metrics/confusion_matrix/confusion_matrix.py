"""Confusion matrix: counts of (true class, predicted class) pairs, written with numpy only.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets and numpy. Options and results follow the Hub's
`confusion_matrix` (scikit-learn's `confusion_matrix`) for single-label class ids, except that the matrix is a nested
list (JSON-ready) and `labels` none of which occur in the references give a matrix of zeros instead of an error.
"""

import datasets
import evaluate
import numpy as np

_NORMALIZE = (None, "true", "pred", "all")

_DESCRIPTION = """\
The confusion matrix counts, for every pair of classes, the examples of the true class (the row) that were predicted
as the other class (the column); its diagonal holds the correct predictions.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    labels (`list` of `int`, optional): The classes of the rows and columns, in this order. Classes absent from the
        data get rows and columns of zeros; examples whose true or predicted class is not listed are left out.
        Defaults to every class seen in `predictions` or `references`, sorted.
    normalize (`str` or `None`): None (the default) for counts; "true" to divide each row by its sum (each row then
        holds the recall-like fractions of that true class), "pred" to divide each column by its sum, "all" to divide
        by the total. A row, column or matrix that sums to 0 stays 0.
    sample_weight (`list` of `float`, optional): One weight per example. Defaults to None (every example counts 1).

Returns:
    confusion_matrix (`list` of `list`): Entry [i][j] is the number (or fraction, or total weight) of examples whose
        true class is labels[i] and predicted class is labels[j]; `int`s for unweighted counts, else `float`s.

Examples:
    >>> confusion_matrix = evaluate.load(str(hf_scratchgpt.metrics.metric_path("confusion_matrix")))
    >>> confusion_matrix.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])
    {'confusion_matrix': [[1, 0, 1], [0, 2, 0], [1, 1, 0]]}
    >>> confusion_matrix.compute(references=[0, 1, 1], predictions=[0, 1, 0], labels=[1, 0, 2], normalize="true")
    {'confusion_matrix': [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]}
"""


def _positions(values, classes):
    """The position of each value in `classes` (distinct, any order), -1 for values not in it."""
    if classes.size == 0:
        return np.full(len(values), -1, dtype=np.int64)
    order = np.argsort(classes)
    positions = order[np.clip(np.searchsorted(classes, values, sorter=order), 0, classes.size - 1)]
    return np.where(classes[positions] == values, positions, -1)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://en.wikipedia.org/wiki/Confusion_matrix"],
        )

    def _compute(self, predictions, references, labels=None, normalize=None, sample_weight=None):
        y_pred, y_true = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if normalize not in _NORMALIZE:
            raise ValueError(f"normalize must be one of {list(_NORMALIZE)}, not {normalize!r}")
        if sample_weight is None:
            weights = np.ones(len(y_true), dtype=np.int64)
        else:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.shape != y_true.shape:
                raise ValueError(f"sample_weight has {weights.size} values for {y_true.size} examples")
        if labels is None:
            classes = np.union1d(y_true, y_pred)
        else:
            classes = np.asarray(labels, dtype=np.int64).reshape(-1)
            if classes.size == 0:
                raise ValueError("labels must name at least one class")
            if np.unique(classes).size != classes.size:
                raise ValueError(f"labels must not repeat a class: {classes.tolist()}")
        rows, cols = _positions(y_true, classes), _positions(y_pred, classes)
        kept = (rows >= 0) & (cols >= 0)
        matrix = np.zeros((classes.size, classes.size), dtype=weights.dtype)
        np.add.at(matrix, (rows[kept], cols[kept]), weights[kept])
        if normalize == "true":
            total = matrix.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            total = matrix.sum(axis=0, keepdims=True)
        elif normalize == "all":
            total = matrix.sum()
        if normalize is not None:
            matrix = np.divide(matrix, total, out=np.zeros(matrix.shape), where=total != 0)
        return {"confusion_matrix": matrix.tolist()}
