"""The package's own `evaluate` metrics: offline loading from their folders, exact values, classification_metrics and
generation_metrics.

conftest.py sets HF_HUB_OFFLINE=1 and a throwaway HF_HOME before anything imports evaluate, so every load below
is offline and writes only there. Metrics are loaded with keep_in_memory=True except where the on-disk cache is tested.
"""

import ast
import inspect
import itertools
import os
import random
import sys
from pathlib import Path

import evaluate
import numpy as np
import pytest

from hf_scratchgpt.metrics import (
    METRICS_DIR,
    available_metrics,
    classification_metrics,
    generation_metrics,
    load_metric,
    metric_path,
)

CLASS_ID_NAMES = ["accuracy", "confusion_matrix", "f1"]
TEXT_NAMES = ["exact_match", "rouge_l", "token_f1"]
NAMES = sorted(CLASS_ID_NAMES + TEXT_NAMES)
# per metric: the dtype of its features and a small input to compute
SAMPLES = {name: ("int32", {"predictions": [0, 1, 1], "references": [0, 1, 0]}) for name in CLASS_ID_NAMES}
SAMPLES |= {name: ("string", {"predictions": ["a b", "c"], "references": ["a b", "d"]}) for name in TEXT_NAMES}


@pytest.fixture(scope="module")
def metric():
    """metric(name): one in-memory instance per metric for the module (compute resets it after each call)."""
    loaded: dict[str, evaluate.EvaluationModule] = {}

    def get(name: str) -> evaluate.EvaluationModule:
        if name not in loaded:
            loaded[name] = load_metric(name, keep_in_memory=True)
        return loaded[name]

    return get


# --- loading -------------------------------------------------------------------------------------------------------


def test_every_metric_is_a_folder_with_its_script_and_an_init():
    assert available_metrics() == NAMES
    for name in NAMES:
        assert metric_path(name) == METRICS_DIR / name
        assert (METRICS_DIR / name / f"{name}.py").is_file()
        assert (METRICS_DIR / name / "__init__.py").is_file(), "without it the wheel leaves the script out"


@pytest.mark.parametrize("name", NAMES)
def test_loads_offline_from_the_package_into_the_isolated_hf_home(name, capfd):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    module = load_metric(name)  # the default, on-disk cache mode
    assert isinstance(module, evaluate.Metric)
    assert type(module).__module__.startswith(f"evaluate_modules.metrics.{name}.")
    copy = Path(inspect.getfile(type(module))).resolve()
    assert copy.is_relative_to(Path(os.environ["HF_HOME"]).resolve()) and copy.name == f"{name}.py"
    assert copy.read_text(encoding="utf-8") == (METRICS_DIR / name / f"{name}.py").read_text(encoding="utf-8")
    assert module.name == name and module.description.strip() and module.inputs_description.strip()
    dtype, sample = SAMPLES[name]
    assert {k: v.dtype for k, v in module.features.items()} == {"predictions": dtype, "references": dtype}
    assert module.compute(**sample) is not None
    assert capfd.readouterr() == ("", ""), "loading and computing print nothing"


def test_f1_cites_its_sources(metric):
    assert "van Rijsbergen" in metric("f1").citation and "scikit-learn" in metric("f1").citation


def test_unknown_metric_names_the_shipped_ones():
    shipped = "accuracy, confusion_matrix, exact_match, f1, rouge_l, token_f1"
    with pytest.raises(ValueError, match=rf"unknown metric 'accurcy': the package ships {shipped}$"):
        metric_path("accurcy")
    with pytest.raises(ValueError, match="unknown metric"):
        load_metric("../metrics")


@pytest.mark.parametrize("name", NAMES)
def test_scripts_import_only_evaluate_datasets_numpy_and_the_standard_library(name):
    """evaluate copies a script alone into HF_MODULES_CACHE: it cannot import its package or its siblings."""
    tree = ast.parse((METRICS_DIR / name / f"{name}.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}.py: relative import"
            tops = [node.module.split(".")[0]]
        elif isinstance(node, ast.Import):
            tops = [alias.name.split(".")[0] for alias in node.names]
        else:
            continue
        for top in tops:
            assert top in ("evaluate", "datasets", "numpy") or top in sys.stdlib_module_names, (name, top)


# --- accuracy ------------------------------------------------------------------------------------------------------

ACC_REFS, ACC_PREDS = [0, 1, 2, 0, 1, 2], [0, 1, 1, 2, 1, 0]  # correct: examples 0, 1 and 4


def test_accuracy(metric):
    accuracy = metric("accuracy")
    assert accuracy.compute(predictions=ACC_PREDS, references=ACC_REFS) == {"accuracy": 0.5}
    assert accuracy.compute(predictions=ACC_PREDS, references=ACC_REFS, normalize=False) == {"accuracy": 3.0}
    weights = [0.5, 2, 0.7, 0.5, 9, 0.4]  # correct weight 11.5 of 13.1
    result = accuracy.compute(predictions=ACC_PREDS, references=ACC_REFS, sample_weight=weights)
    assert result["accuracy"] == pytest.approx(11.5 / 13.1)
    result = accuracy.compute(predictions=ACC_PREDS, references=ACC_REFS, sample_weight=weights, normalize=False)
    assert result["accuracy"] == pytest.approx(11.5)
    assert accuracy.compute(predictions=[3, 3], references=[3, 3]) == {"accuracy": 1.0}
    with pytest.raises(ValueError, match="sample_weight has 2 values for 6 examples"):
        accuracy.compute(predictions=ACC_PREDS, references=ACC_REFS, sample_weight=[1, 2])


# --- f1 ------------------------------------------------------------------------------------------------------------


def test_f1_binary(metric):
    f1 = metric("f1")
    refs, preds = [0, 1, 0, 1, 0], [0, 0, 1, 1, 0]
    assert f1.compute(predictions=preds, references=refs) == {"f1": 0.5}  # class 1: TP 1, FP 1, FN 1
    assert f1.compute(predictions=preds, references=refs, pos_label=0)["f1"] == pytest.approx(2 / 3)  # TP 2, FP 1, FN 1
    weights = [0.9, 0.5, 3.9, 1.2, 0.3]  # class 1: TP 1.2, FP 3.9, FN 0.5
    assert f1.compute(predictions=preds, references=refs, sample_weight=weights)["f1"] == pytest.approx(2.4 / 6.8)
    assert f1.compute(predictions=preds, references=refs, labels=[0, 1, 2]) == {"f1": 0.5}  # ignored for binary
    assert f1.compute(predictions=[0, 0], references=[0, 0]) == {"f1": 0.0}  # pos_label 1 absent on both sides
    with pytest.raises(ValueError, match=r"average='binary' needs at most two classes but the data holds \[0, 1, 2\]"):
        f1.compute(predictions=[0, 1, 2], references=[0, 1, 1])
    with pytest.raises(ValueError, match=r"pos_label=5 is not one of the classes \[0, 1\]"):
        f1.compute(predictions=preds, references=refs, pos_label=5)
    with pytest.raises(ValueError, match="average must be one of"):
        f1.compute(predictions=preds, references=refs, average="samples")


# per class (TP, predicted, true): 0 (2, 2, 3) -> F1 0.8; 1 (1, 2, 2) -> 0.5; 2 (1, 2, 1) -> 2/3
F1_REFS, F1_PREDS = [0, 0, 0, 1, 1, 2], [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize(
    ("average", "expected"),
    [
        ("macro", (0.8 + 0.5 + 2 / 3) / 3),
        ("micro", 8 / 12),  # 2 * 4 correct / (6 true + 6 predicted): accuracy, for single-label data
        ("weighted", (0.8 * 3 + 0.5 * 2 + 2 / 3 * 1) / 6),
    ],
)
def test_f1_averages(metric, average, expected):
    assert metric("f1").compute(predictions=F1_PREDS, references=F1_REFS, average=average)["f1"] == pytest.approx(
        expected
    )


def test_f1_per_class_and_labels(metric):
    f1 = metric("f1")
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average=None)["f1"]
    assert isinstance(result, np.ndarray) and result == pytest.approx([0.8, 0.5, 2 / 3])
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average=None, labels=[2, 0])["f1"]
    assert result == pytest.approx([2 / 3, 0.8])  # the order of labels, other classes not scored
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average="micro", labels=[0])["f1"]
    assert result == pytest.approx(0.8)  # only class 0's counts: TP 2, predicted 2, true 3
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average=None, labels=[0, 1, 2, 3])["f1"]
    assert result == pytest.approx([0.8, 0.5, 2 / 3, 0.0])  # class 3: no predicted, no true examples -> 0
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average="macro", labels=[0, 1, 2, 3])["f1"]
    assert result == pytest.approx((0.8 + 0.5 + 2 / 3) / 4)  # ... and it counts in the macro average
    result = f1.compute(predictions=F1_PREDS, references=F1_REFS, average="weighted", labels=[0, 1, 2, 3])["f1"]
    assert result == pytest.approx((0.8 * 3 + 0.5 * 2 + 2 / 3) / 6)  # but weighs 0 in the weighted one
    assert f1.compute(predictions=[1, 1], references=[1, 1], average="weighted", labels=[0])["f1"] == 0.0
    with pytest.raises(ValueError, match="labels must name at least one class"):
        f1.compute(predictions=F1_PREDS, references=F1_REFS, average="macro", labels=[])


def test_f1_class_with_true_examples_but_no_predictions(metric):
    f1 = metric("f1")
    refs, preds = [0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 1, 1]  # (TP, predicted, true): 0 (2,3,2), 1 (1,3,2), 2 (0,0,2)
    assert f1.compute(predictions=preds, references=refs, average=None)["f1"] == pytest.approx([0.8, 0.4, 0.0])
    assert f1.compute(predictions=preds, references=refs, average="macro")["f1"] == pytest.approx(0.4)
    assert f1.compute(predictions=preds, references=refs, average="micro")["f1"] == pytest.approx(0.5)
    assert f1.compute(predictions=preds, references=refs, average="weighted")["f1"] == pytest.approx(0.4)


def test_f1_and_accuracy_match_scikit_learn_when_it_is_installed(metric):
    metrics = pytest.importorskip("sklearn.metrics")  # not a dependency: the hand-computed tests above always run
    rng = np.random.default_rng(0)
    refs, preds = rng.integers(0, 4, 60).tolist(), rng.integers(0, 5, 60).tolist()
    weights = rng.random(60).tolist()
    for average in ("macro", "micro", "weighted", None):
        for labels in (None, [3, 0, 1, 6]):
            for sample_weight in (None, weights):
                kwargs = dict(average=average, labels=labels, sample_weight=sample_weight)
                expected = metrics.f1_score(refs, preds, zero_division=0, **kwargs)
                assert metric("f1").compute(predictions=preds, references=refs, **kwargs)["f1"] == pytest.approx(
                    expected
                )
    binary_refs, binary_preds = rng.integers(0, 2, 30).tolist(), rng.integers(0, 2, 30).tolist()
    for pos_label in (0, 1):
        expected = metrics.f1_score(binary_refs, binary_preds, pos_label=pos_label)
        result = metric("f1").compute(predictions=binary_preds, references=binary_refs, pos_label=pos_label)
        assert result["f1"] == pytest.approx(expected)
    for labels in (None, [4, 0, 2]):
        expected = metrics.confusion_matrix(refs, preds, labels=labels, normalize="true")
        result = metric("confusion_matrix").compute(predictions=preds, references=refs, labels=labels, normalize="true")
        assert np.asarray(result["confusion_matrix"]) == pytest.approx(expected)
    assert metric("accuracy").compute(predictions=preds, references=refs)["accuracy"] == pytest.approx(
        metrics.accuracy_score(refs, preds)
    )


# --- confusion_matrix ----------------------------------------------------------------------------------------------


def test_confusion_matrix_counts_and_labels(metric):
    cm = metric("confusion_matrix")
    result = cm.compute(predictions=ACC_PREDS, references=ACC_REFS)["confusion_matrix"]
    assert result == [[1, 0, 1], [0, 2, 0], [1, 1, 0]]  # rows: true class, columns: predicted class
    assert all(isinstance(count, int) for row in result for count in row)
    result = cm.compute(predictions=ACC_PREDS, references=ACC_REFS, labels=[2, 0, 1])["confusion_matrix"]
    assert result == [[0, 1, 1], [1, 1, 0], [0, 0, 2]]
    result = cm.compute(predictions=ACC_PREDS, references=ACC_REFS, labels=[0, 1, 2, 3])["confusion_matrix"]
    assert result == [[1, 0, 1, 0], [0, 2, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]  # an absent class: zeros
    result = cm.compute(predictions=ACC_PREDS, references=ACC_REFS, labels=[0, 1])["confusion_matrix"]
    assert result == [[1, 0], [0, 2]]  # examples with class 2 on either side are left out
    weights = [1, 2, 3, 4, 5, 6]
    result = cm.compute(predictions=ACC_PREDS, references=ACC_REFS, sample_weight=weights)["confusion_matrix"]
    assert result == [[1.0, 0.0, 4.0], [0.0, 7.0, 0.0], [6.0, 3.0, 0.0]]
    with pytest.raises(ValueError, match="labels must not repeat a class"):
        cm.compute(predictions=ACC_PREDS, references=ACC_REFS, labels=[0, 1, 0])
    with pytest.raises(ValueError, match="labels must name at least one class"):
        cm.compute(predictions=ACC_PREDS, references=ACC_REFS, labels=[])


@pytest.mark.parametrize(
    ("normalize", "expected"),
    [
        ("true", [[0.5, 0, 0.5, 0], [0, 1, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 0, 0]]),  # rows sum to 1 (or 0)
        ("pred", [[0.5, 0, 1, 0], [0, 2 / 3, 0, 0], [0.5, 1 / 3, 0, 0], [0, 0, 0, 0]]),  # columns sum to 1 (or 0)
        ("all", [[1 / 6, 0, 1 / 6, 0], [0, 2 / 6, 0, 0], [1 / 6, 1 / 6, 0, 0], [0, 0, 0, 0]]),
    ],
)
def test_confusion_matrix_normalize(metric, normalize, expected):
    result = metric("confusion_matrix").compute(
        predictions=ACC_PREDS, references=ACC_REFS, labels=[0, 1, 2, 3], normalize=normalize
    )["confusion_matrix"]
    assert np.asarray(result) == pytest.approx(np.asarray(expected))


def test_confusion_matrix_rejects_an_unknown_normalize(metric):
    with pytest.raises(ValueError, match="normalize must be one of"):
        metric("confusion_matrix").compute(predictions=ACC_PREDS, references=ACC_REFS, normalize="rows")


# --- batches -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("accuracy", {"sample_weight": [1, 2, 3, 4, 5, 6]}),
        ("f1", {"average": "weighted", "labels": [0, 1, 2, 3]}),
        ("confusion_matrix", {"labels": [2, 1, 0], "normalize": "true"}),
    ],
)
@pytest.mark.parametrize("keep_in_memory", [True, False])
def test_add_batch_then_compute_equals_one_compute(name, kwargs, keep_in_memory):
    module = load_metric(name, keep_in_memory=keep_in_memory)
    whole = module.compute(predictions=F1_PREDS, references=F1_REFS, **kwargs)
    module.add_batch(predictions=F1_PREDS[:4], references=F1_REFS[:4])
    module.add_batch(predictions=np.array(F1_PREDS[4:]), references=np.array(F1_REFS[4:]))
    assert module.compute(**kwargs) == whole
    for prediction, reference in zip(F1_PREDS, F1_REFS):
        module.add(prediction=prediction, reference=reference)
    assert module.compute(**kwargs) == whole


# --- classification_metrics ----------------------------------------------------------------------------------------


def test_classification_metrics_three_classes():
    # per class (TP, predicted, true): 0 (1, 1, 2) -> F1 2/3; 1 (1, 2, 2) -> 1/2; 2 (1, 2, 1) -> 2/3
    refs, preds = [0, 1, 1, 2, 0], [0, 1, 2, 2, 1]
    result = classification_metrics(preds, refs, labels=[0, 1, 2])
    assert set(result) == {"accuracy", "f1_macro", "f1_per_class", "confusion_matrix"}  # "f1" only for two classes
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["f1_per_class"] == pytest.approx([2 / 3, 1 / 2, 2 / 3])
    assert result["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 3)
    assert result["confusion_matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    result = classification_metrics(np.array(preds), np.array(refs), labels=[0, 1, 2, 3])  # class 3 never occurs
    assert result["f1_macro"] == pytest.approx((2 / 3 + 1 / 2 + 2 / 3) / 4)
    assert result["confusion_matrix"][3] == [0, 0, 0, 0] and len(result["confusion_matrix"][0]) == 4


def test_classification_metrics_two_classes():
    result = classification_metrics([0, 1, 1, 1], [0, 1, 0, 1], labels=[0, 1])
    assert result["accuracy"] == 0.75
    assert result["f1"] == pytest.approx(0.8)  # class 1: TP 2, FP 1, FN 0
    assert result["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)
    assert result["confusion_matrix"] == [[1, 1], [0, 2]]


def test_classification_metrics_rejects_bad_inputs():
    with pytest.raises(ValueError, match=r"classes \[2\] in the predictions or references are not among the labels"):
        classification_metrics([0, 2], [0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="3 predictions for 2 references"):
        classification_metrics([0, 1, 1], [0, 1], labels=[0, 1])
    with pytest.raises(ValueError, match="labels must be distinct"):
        classification_metrics([0, 1], [0, 1], labels=[0, 1, 1])
    with pytest.raises(ValueError, match="no predictions"):
        classification_metrics([], [], labels=[0, 1])
    assert classification_metrics([1], [1], labels=[0, 1])["accuracy"] == 1.0  # the shared modules still work


# --- generated texts: loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TEXT_NAMES)
def test_text_metrics_load_offline_with_evaluate_load_of_their_folder(name):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    module = evaluate.load(str(metric_path(name)), keep_in_memory=True)
    assert isinstance(module, evaluate.Metric) and module.name == name
    assert module.compute(predictions=["Same text."], references=["Same text."]) == {name: 1.0}
    with pytest.raises(ValueError, match="don't match the expected format"):  # strings only: evaluate checks
        module.compute(predictions=[1], references=[1])
    with pytest.raises(ValueError, match=f"{name} of no examples is undefined"):
        module.compute(predictions=[], references=[])


def test_text_metrics_cite_their_sources(metric):
    assert "Rajpurkar, Pranav" in metric("token_f1").citation and "Machine Comprehension" in metric("token_f1").citation
    assert "Lin, Chin-Yew" in metric("rouge_l").citation


# --- exact_match ---------------------------------------------------------------------------------------------------

EM_PREDS = ["Paris", " rome\n", "OSLO", "Bergen ", "the end."]
EM_REFS = ["Paris", "rome", "Oslo", "bergen", "The end"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, 2 / 5),  # "Paris", and " rome\n" once stripped
        ({"ignore_case": True}, 4 / 5),  # + "OSLO", "Bergen "; "the end." keeps its full stop
        ({"strip": False}, 1 / 5),  # only "Paris"
        ({"strip": False, "ignore_case": True}, 2 / 5),  # "Paris", "OSLO"; the others keep their whitespace
    ],
)
def test_exact_match_options(metric, options, expected):
    result = metric("exact_match").compute(predictions=EM_PREDS, references=EM_REFS, **options)
    assert result == {"exact_match": pytest.approx(expected)}
    assert isinstance(result["exact_match"], float)


def test_exact_match_edge_cases(metric):
    exact_match = metric("exact_match")
    assert exact_match.compute(predictions=["Straße"], references=["STRASSE"], ignore_case=True)["exact_match"] == 1.0
    assert exact_match.compute(predictions=["Straße"], references=["STRASSE"])["exact_match"] == 0.0
    assert exact_match.compute(predictions=[""], references=[" \t\n"])["exact_match"] == 1.0  # both empty once stripped
    assert exact_match.compute(predictions=[""], references=[" \t\n"], strip=False)["exact_match"] == 0.0
    assert exact_match.compute(predictions=["a  b"], references=["a b"])["exact_match"] == 0.0  # inner space counts


# --- token_f1 ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("The cat sat.", "the cat is sitting", 4 / 7),  # overlap 2: P 2/3, R 2/4
        ("the the the", "the cat", 0.4),  # bags: "the" overlaps once (min of 3 and 1): P 1/3, R 1/2
        ("the cat the", "the the dog cat", 6 / 7),  # overlap the x2 + cat = 3: P 3/3, R 3/4
        ("Don't PANIC!", "dont panic", 1.0),  # lowercase, punctuation deleted
        ("\u201cHello,\u201d she said\u2026", "hello she said", 1.0),  # Unicode punctuation deleted too
        ("state-of-the-art", "state of the art", 0.0),  # deleted, not replaced by a space: one token
        ("a cat", "the cat", 0.5),  # articles are kept (the official SQuAD script drops them)
        ("gunman the killed police", "police killed the gunman", 1.0),  # order does not matter
        ("a b", "c d", 0.0),
        ("", "", 1.0),  # both without tokens
        ("!!!", "  ", 1.0),  # punctuation alone: no tokens
        ("", "word", 0.0),
        ("word", "?", 0.0),
    ],
)
def test_token_f1_per_example(metric, prediction, reference, expected):
    result = metric("token_f1").compute(predictions=[prediction], references=[reference])
    assert result["token_f1"] == pytest.approx(expected)


def test_token_f1_is_the_mean_over_examples(metric):
    result = metric("token_f1").compute(
        predictions=["The cat sat.", "the the the", "x"], references=["the cat is sitting", "the cat", "y"]
    )
    assert result["token_f1"] == pytest.approx((4 / 7 + 0.4 + 0.0) / 3)


# --- rouge_l -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        # Lin (2004), section 3.1: against "police killed the gunman", S2 shares "police the gunman" (LCS 3 of 4),
        # S3 "the gunman kill police" only "the gunman" (LCS 2 of 4)
        ("police kill the gunman", "police killed the gunman", 0.75),
        ("the gunman kill police", "police killed the gunman", 0.5),
        ("the quick brown fox", "the fox", 2 / 3),  # LCS 2: P 2/4, R 2/2
        ("a x b y c", "a b c", 0.75),  # a subsequence, not a substring: LCS 3, P 3/5, R 3/3
        ("a b a b", "b a b a", 0.75),  # LCS 3 ("a b a" or "b a b")
        ("gunman the killed police", "police killed the gunman", 0.25),  # reversed: LCS 1 (token_f1 says 1.0)
        ("Police, KILLED the gunman!", "police killed the gunman", 1.0),  # same tokenisation as token_f1
        ("a b", "c d", 0.0),
        ("", "", 1.0),
        ("...", "", 1.0),
        ("", "word", 0.0),
    ],
)
def test_rouge_l_per_example(metric, prediction, reference, expected):
    result = metric("rouge_l").compute(predictions=[prediction], references=[reference])
    assert result["rouge_l"] == pytest.approx(expected)


def _brute_force_lcs(a: list[str], b: list[str]) -> int:
    """The longest subsequence of `a` (all 2^len(a) of them) that is also a subsequence of `b`."""

    def is_subsequence(sub: tuple[str, ...], seq: list[str]) -> bool:
        rest = iter(seq)
        return all(token in rest for token in sub)

    for length in range(len(a), 0, -1):
        if any(is_subsequence(sub, b) for sub in itertools.combinations(a, length)):
            return length
    return 0


def test_rouge_l_matches_a_brute_force_lcs_on_random_token_lists(metric):
    rng = random.Random(0)
    predictions, references, expected = [], [], []
    for _ in range(60):
        a = [rng.choice("abcd") for _ in range(rng.randint(1, 8))]
        b = [rng.choice("abcd") for _ in range(rng.randint(1, 8))]
        lcs = _brute_force_lcs(a, b)
        expected.append(0.0 if lcs == 0 else 2 * lcs / (len(a) + len(b)))  # 2PR/(P+R) with P=lcs/|a|, R=lcs/|b|
        predictions.append(" ".join(a))
        references.append(" ".join(b))
    assert len(set(expected)) > 5, "the random cases cover many different scores"
    for prediction, reference, value in zip(predictions, references, expected):
        assert metric("rouge_l").compute(predictions=[prediction], references=[reference])["rouge_l"] == pytest.approx(
            value
        ), (prediction, reference)
    result = metric("rouge_l").compute(predictions=predictions, references=references)["rouge_l"]
    assert result == pytest.approx(np.mean(expected))


@pytest.mark.parametrize("name", TEXT_NAMES)
@pytest.mark.parametrize("keep_in_memory", [True, False])
def test_text_metrics_add_batch_then_compute_equals_one_compute(name, keep_in_memory):
    module = load_metric(name, keep_in_memory=keep_in_memory)
    whole = module.compute(predictions=EM_PREDS, references=EM_REFS)
    module.add_batch(predictions=EM_PREDS[:2], references=EM_REFS[:2])
    module.add_batch(predictions=EM_PREDS[2:], references=EM_REFS[2:])
    assert module.compute() == whole


# --- generation_metrics --------------------------------------------------------------------------------------------


def test_generation_metrics_values():
    predictions = ["The cat sat.", "police kill the gunman", " Paris\n"]
    references = ["the cat is sitting", "Police killed the gunman.", "Paris"]
    result = generation_metrics(predictions, references)
    assert list(result) == ["exact_match", "token_f1", "rouge_l"]
    assert all(isinstance(value, float) and 0.0 <= value <= 1.0 for value in result.values())
    assert result["exact_match"] == pytest.approx(1 / 3)  # only " Paris\n", once stripped
    # token F1: 4/7 (see above); "police kill the gunman": overlap 3 of 4 on both sides -> 0.75; "paris" -> 1
    assert result["token_f1"] == pytest.approx((4 / 7 + 0.75 + 1.0) / 3)
    # ROUGE-L: "the cat" is the LCS of the first pair (2 of 3 and 2 of 4: as token F1), 0.75, 1
    assert result["rouge_l"] == pytest.approx((4 / 7 + 0.75 + 1.0) / 3)
    result = generation_metrics(["gunman the killed police"], ["police killed the gunman"])
    assert result == {"exact_match": 0.0, "token_f1": 1.0, "rouge_l": 0.25}


def test_generation_metrics_rejects_bad_inputs():
    with pytest.raises(ValueError, match="^3 predictions for 2 references$"):
        generation_metrics(["a", "b", "c"], ["a", "b"])
    with pytest.raises(ValueError, match="^no predictions to score$"):
        generation_metrics([], [])
    with pytest.raises(ValueError, match=r"^references\[1\] is NoneType None, expected a string$"):
        generation_metrics(["a", "b"], ["a", None])
    with pytest.raises(ValueError, match=r"^predictions\[0\] is int 3, expected a string$"):
        generation_metrics([3], ["3"])
    assert generation_metrics(["a"], ["a"]) == {"exact_match": 1.0, "token_f1": 1.0, "rouge_l": 1.0}
