"""Exact match: the fraction of generated texts equal to their reference text, written with numpy only.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets, numpy and the standard library.

Comparison: by default each prediction and reference is stripped of its surrounding whitespace (`str.strip()`: spaces,
tabs, newlines, ...) and then compared character for character, case included. `strip=False` compares the texts as
given; `ignore_case=True` compares their `str.casefold()` forms (so "Straße" matches "STRASSE"). Nothing else is
normalised: punctuation, inner whitespace and articles all count (the Hub's `exact_match` has regex and punctuation
options; this one keeps to the two above).
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Exact match is the fraction of predictions that equal their reference:
ExactMatch = (number of predictions equal to their reference) / (number of predictions).
By default both texts are stripped of surrounding whitespace before the comparison; case counts unless
`ignore_case=True`.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Generated texts.
    references (`list` of `str`): Reference texts, one per prediction.
    ignore_case (`bool`): If True, compare the casefolded texts (`str.casefold`). Defaults to False.
    strip (`bool`): If True (the default), strip surrounding whitespace from both texts before comparing.

Returns:
    exact_match (`float`): The fraction (0 to 1) of predictions equal to their reference.

Examples:
    >>> exact_match = evaluate.load(str(hf_scratchgpt.metrics.metric_path("exact_match")))
    >>> exact_match.compute(predictions=["Paris ", "rome", "Oslo"], references=["Paris", "Rome", "Bergen"])
    {'exact_match': 0.3333333333333333}
    >>> exact_match.compute(predictions=["Paris ", "rome", "Oslo"], references=["Paris", "Rome", "Bergen"],
    ...                     ignore_case=True)
    {'exact_match': 0.6666666666666666}
"""


def _normalize(text: str, ignore_case: bool, strip: bool) -> str:
    if strip:
        text = text.strip()
    return text.casefold() if ignore_case else text


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, ignore_case=False, strip=True):
        if len(predictions) == 0:
            raise ValueError("exact_match of no examples is undefined")
        for i, (prediction, reference) in enumerate(zip(predictions, references)):
            if prediction is None or reference is None:
                raise ValueError(f"exact_match: example {i} has a missing (None) prediction or reference, not a string")
        matches = [
            _normalize(prediction, ignore_case, strip) == _normalize(reference, ignore_case, strip)
            for prediction, reference in zip(predictions, references)
        ]
        return {"exact_match": float(np.mean(matches))}
