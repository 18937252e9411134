"""Token F1: SQuAD-style overlap of the (bags of) tokens of a generated text and its reference, numpy only.

A standalone `evaluate` metric script: `evaluate.load(<this folder>)` copies it alone into HF_MODULES_CACHE and imports
it from there, so it imports only evaluate, datasets, numpy and the standard library.

Tokens: a text is lowercased (`str.lower()`), every punctuation character is deleted (not replaced by a space) -- the
ASCII ones of `string.punctuation` and every Unicode character of a punctuation category (P*, e.g. curly quotes and
dashes) -- and what is left is split on whitespace (`str.split()`). So "Don't panic!" gives ["dont", "panic"] and
"state-of-the-art" gives ["stateoftheart"]. Unlike the official SQuAD script, articles (a, an, the) are kept.
The `rouge_l` script tokenises the same way (each script carries its own copy: a script is loaded alone).

Per example, with the tokens as bags (a token counts as often as it occurs, the overlap of a token is the smaller of
its two counts): precision = overlap / prediction tokens, recall = overlap / reference tokens,
F1 = 2 * precision * recall / (precision + recall), and 0 when nothing overlaps. Both texts without tokens: 1.0;
only one of them without tokens: 0.0. The result is the mean over the examples.
"""

import collections
import string
import unicodedata

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """\
Token F1 is the harmonic mean of the token precision and recall of each prediction against its reference, the tokens
counted as bags (SQuAD's F1), averaged over the examples. Tokens: lowercase, punctuation deleted, whitespace split.
Two texts without tokens score 1, one text without tokens scores 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): Generated texts.
    references (`list` of `str`): Reference texts, one per prediction.

Returns:
    token_f1 (`float`): The mean (0 to 1) of the per-example token F1 scores.

Examples:
    >>> token_f1 = evaluate.load(str(hf_scratchgpt.metrics.metric_path("token_f1")))
    >>> token_f1.compute(predictions=["The cat sat."], references=["the cat is sitting"])
    {'token_f1': 0.5714285714285714}
"""

_CITATION = """\
@inproceedings{rajpurkar-etal-2016-squad,
  title={{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text},
  author={Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy},
  booktitle={Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing},
  pages={2383--2392},
  year={2016}
}
"""

_ASCII_PUNCTUATION = frozenset(string.punctuation)


def _tokens(text: str) -> list[str]:
    """Lowercase, delete punctuation (ASCII and Unicode category P*), split on whitespace."""
    kept = (ch for ch in text.lower() if ch not in _ASCII_PUNCTUATION and not unicodedata.category(ch).startswith("P"))
    return "".join(kept).split()


def _f1(prediction: list[str], reference: list[str]) -> float:
    if not prediction or not reference:
        return float(not prediction and not reference)
    overlap = sum((collections.Counter(prediction) & collections.Counter(reference)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(prediction), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenF1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        if len(predictions) == 0:
            raise ValueError("token_f1 of no examples is undefined")
        scores = []
        for i, (prediction, reference) in enumerate(zip(predictions, references)):
            if prediction is None or reference is None:
                raise ValueError(f"token_f1: example {i} has a missing (None) prediction or reference, not a string")
            scores.append(_f1(_tokens(prediction), _tokens(reference)))
        return {"token_f1": float(np.mean(scores))}
