"""ROUGE-L: the F-measure of the longest common subsequence of tokens of a generated text and its reference.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets, numpy and the standard library (the Hub's `rouge` needs a
download and the `rouge_score` package; this one needs neither).

Tokens, exactly as the `token_f1` script makes them (each script carries its own copy: a script is loaded alone):
a text is lowercased (`str.lower()`), every punctuation character is deleted (not replaced by a space) -- the ASCII
ones of `string.punctuation` and every Unicode character of a punctuation category (P*) -- and what is left is split
on whitespace (`str.split()`). No stemming and no stopword removal (`rouge_score` tokenises differently: it replaces
every non-alphanumeric character by a space, and may stem).

Per example (sentence-level ROUGE-L of Lin, 2004, with beta = 1): LCS = the length of the longest common subsequence
of the two token lists (tokens in the same order, not necessarily adjacent), precision = LCS / prediction tokens,
recall = LCS / reference tokens, F = 2 * precision * recall / (precision + recall), and 0 when LCS is 0. Both texts
without tokens: 1.0 (as in `token_f1`; `rouge_score` gives 0); only one of them without tokens: 0.0. The result is
the mean over the examples.
"""

import string
import unicodedata

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
ROUGE-L is the F-measure of the longest common subsequence (LCS) of the tokens of each prediction and its reference:
P = LCS / len(prediction), R = LCS / len(reference), F = 2PR / (P + R), averaged over the examples.
Tokens: lowercase, punctuation deleted, whitespace split (as token_f1). Two texts without tokens score 1, one text
without tokens scores 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Generated texts.
    references (`list` of `str`): Reference texts, one per prediction.

Returns:
    rouge_l (`float`): The mean (0 to 1) of the per-example ROUGE-L F-measures.

Examples:
    >>> rouge_l = evaluate.load(str(hf_scratchgpt.metrics.metric_path("rouge_l")))
    >>> rouge_l.compute(predictions=["police kill the gunman"], references=["Police killed the gunman."])
    {'rouge_l': 0.75}
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title={{ROUGE}: A Package for Automatic Evaluation of Summaries},
  author={Lin, Chin-Yew},
  booktitle={Text Summarization Branches Out},
  pages={74--81},
  year={2004},
  publisher={Association for Computational Linguistics},
  address={Barcelona, Spain}
}
"""

_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _tokens(text: str) -> list[str]:
    """Lowercase, delete punctuation (ASCII and Unicode category P*), split on whitespace."""
    kept = (ch for ch in text.lower() if ch not in _ASCII_PUNCTUATION and not unicodedata.category(ch).startswith("P"))
    return "".join(kept).split()


def _lcs_length(a: list[str], b: list[str]) -> int:
    """The length of the longest common subsequence, by dynamic programming one row at a time."""
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for token in a:
        current = [0]
        for j, other in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def _rouge_l(prediction: list[str], reference: list[str]) -> float:
    if not prediction or not reference:
        return float(not prediction and not reference)
    lcs = _lcs_length(prediction, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(prediction), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("rouge_l of no examples is undefined")
        scores = []
        for i, (prediction, reference) in enumerate(zip(predictions, references)):
            if prediction is None or reference is None:
                raise ValueError(f"rouge_l: example {i} has a missing (None) prediction or reference, not a string")
            scores.append(_rouge_l(_tokens(prediction), _tokens(reference)))
        return {"rouge_l": float(np.mean(scores))}
