"""Accuracy: the (weighted) fraction of predictions equal to their references, written with numpy only.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets and numpy. Options and results follow the Hub's `accuracy`
(scikit-learn's `accuracy_score`) for single-label class ids.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Accuracy is the fraction of predictions that equal their reference:
Accuracy = (number of correct predictions) / (number of predictions).
With `sample_weight`, each example counts with its weight: sum(weight * correct) / sum(weight).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    normalize (`bool`): If True (the default), the fraction of correct predictions; if False, their number
        (the sum of their weights with `sample_weight`).
    sample_weight (`list` of `float`, optional): One weight per example. Defaults to None (every example counts 1).

Returns:
    accuracy (`float`): The fraction (0 to 1) or, with `normalize=False`, the (weighted) count of correct predictions.

Examples:
    >>> accuracy = evaluate.load(str(hf_scratchgpt.metrics.metric_path("accuracy")))
    >>> accuracy.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0])
    {'accuracy': 0.5}
    >>> accuracy.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 1, 1, 2, 1, 0], normalize=False)
    {'accuracy': 3.0}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        correct = np.asarray(predictions) == np.asarray(references)
        if sample_weight is None:
            weights = np.ones(len(correct))
        else:
            weights = np.asarray(sample_weight, dtype=np.float64)
            if weights.shape != correct.shape:
                raise ValueError(f"sample_weight has {weights.size} values for {correct.size} examples")
        if not normalize:
            return {"accuracy": float(np.dot(correct, weights))}
        if weights.sum() == 0:
            raise ValueError("accuracy of no examples (or of examples whose weights sum to 0) is undefined")
        return {"accuracy": float(np.dot(correct, weights) / weights.sum())}
