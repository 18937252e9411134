"""F1: the harmonic mean of precision and recall, per class or averaged, written with numpy only.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets and numpy. Options and results follow the Hub's `f1`
(scikit-learn's `f1_score` with `zero_division=0`) for single-label class ids.

Zero-division rule: a class with no predicted and no true examples (one listed in `labels` but absent from the data,
or `pos_label` when neither side has it) gets F1 0, and counts as 0 in the "macro" average. An average with no
examples at all of the selected classes is 0 as well.
"""

import datasets
import evaluate
import numpy as np

_AVERAGES = ("binary", "macro", "micro", "weighted", None)

_DESCRIPTION = """\
The F1 score is the harmonic mean of precision and recall:
F1 = 2 * (precision * recall) / (precision + recall) = 2 * TP / (2 * TP + FP + FN),
per class (that class against the rest), then averaged over the classes as `average` says.
A class with no predicted and no true examples (TP + FP + FN = 0) gets F1 0 (scikit-learn's `zero_division=0`).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): Predicted class ids.
    references (`list` of `int`): True class ids.
    average (`str` or `None`): How the per-class scores are combined. Defaults to "binary".
        - "binary": only the class `pos_label`; the data may hold at most two classes.
        - "macro": the unweighted mean of the per-class scores (every class in `labels` counts, even absent ones).
        - "micro": F1 of the counts summed over the classes: 2 * sum(TP) / (2 * sum(TP) + sum(FP) + sum(FN)).
        - "weighted": the mean of the per-class scores weighted by their support (number of true examples).
        - None: the per-class scores, a numpy array in the order of `labels`.
    pos_label (`int`): The positive class when `average="binary"`. Defaults to 1.
    labels (`list` of `int`, optional): The classes to score and their order (for `average=None`); classes absent
        from the data get F1 0, and classes of the data left out are not scored (though their examples still count
        as false positives/negatives of the listed classes they are confused with). Defaults to every class seen in
        `predictions` or `references`, sorted. Ignored when `average="binary"`.
    sample_weight (`list` of `float`, optional): One weight per example. Defaults to None (every example counts 1).

Returns:
    f1 (`float`, or a numpy array of `float` when `average=None`): between 0 and 1, higher is better.

Examples:
    >>> f1 = evaluate.load(str(hf_scratchgpt.metrics.metric_path("f1")))
    >>> f1.compute(references=[0, 1, 0, 1, 0], predictions=[0, 0, 1, 1, 0])
    {'f1': 0.5}
    >>> f1.compute(references=[0, 1, 2, 0, 1, 2], predictions=[0, 2, 1, 0, 0, 1], average=None)
    {'f1': array([0.8, 0. , 0. ])}
"""

_CITATION = """\
@book{van_rijsbergen_1979,
  title={Information Retrieval},
  author={van Rijsbergen, C. J.},
  edition={2nd},
  publisher={Butterworths},
  address={London},
  year={1979}
}
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


def _ratio(numerator, denominator):
    """numerator / denominator, elementwise, with 0 where the denominator is 0 (the zero-division rule)."""
    numerator, denominator = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    out = np.zeros_like(numerator)
    np.divide(numerator, denominator, out=out, where=denominator != 0)
    return out


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}),
            reference_urls=["https://en.wikipedia.org/wiki/F-score"],
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None):
        y_pred, y_true = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        if average not in _AVERAGES:
            raise ValueError(f"average must be one of {list(_AVERAGES)}, not {average!r}")
        weights = np.ones(len(y_true)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != y_true.shape:
            raise ValueError(f"sample_weight has {weights.size} values for {y_true.size} examples")
        present = np.union1d(y_true, y_pred)
        if average == "binary":
            if present.size > 2:
                raise ValueError(
                    f"average='binary' needs at most two classes but the data holds {present.tolist()}; "
                    "choose average='macro', 'micro', 'weighted' or None"
                )
            if present.size == 2 and pos_label not in present:
                raise ValueError(f"pos_label={pos_label} is not one of the classes {present.tolist()}")
            classes = np.array([pos_label], dtype=np.int64)
        elif labels is None:
            classes = present
        else:
            classes = np.asarray(labels, dtype=np.int64).reshape(-1)
            if classes.size == 0:
                raise ValueError("labels must name at least one class")
        is_true, is_pred = y_true[:, None] == classes, y_pred[:, None] == classes  # (examples, classes)
        true_sum, pred_sum, tp = weights @ is_true, weights @ is_pred, weights @ (is_true & is_pred)
        if average == "micro":
            return {"f1": float(_ratio(2 * tp.sum(), true_sum.sum() + pred_sum.sum()))}
        per_class = _ratio(2 * tp, true_sum + pred_sum)
        if average is None:
            return {"f1": per_class}
        if average == "weighted":
            return {"f1": float(_ratio(per_class @ true_sum, true_sum.sum()))}
        return {"f1": float(per_class.mean()) if per_class.size else 0.0}  # "macro", or "binary" (one class)
