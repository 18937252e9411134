"""Evaluation: perplexity and bits per byte in sliding windows, lm-eval on a saved folder and on a model object.

The references are computed here, directly with the model: the log-probability of each token given
what precedes it (the sum of log-softmax of the continuation tokens given the context). lm-eval's
loglikelihoods must equal them through its HF backend (the folder's remote code, `trust_remote_code`)
and through `HFLM(pretrained=model_object)`, with the context length read from the config: the
tokenizer here says 1000, the model 32, and a request longer than 32 tokens would make the model raise.
"""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_scratchgpt.cli import main
from hf_scratchgpt.evaluation import (
    LM_EVAL_EXTRA,
    perplexity,
    resolve_tasks,
    run_lm_eval,
    score_windows,
)
from hf_scratchgpt.tokenization import load_tokenizer

from .conftest import SHARED_DATA

CONTEXT = 32
TOLERANCE = 1e-4  # nats, on sums of up to ~40 float32 log-probabilities

LOGLIKELIHOOD_DOCS = [
    {"context": "I had always thought Jack Gisburn", "continuation": " rather a cheap genius"},
    {"context": "The", "continuation": " picture was"},
    {"context": "", "continuation": "Hello there"},  # empty context: conditioned on the start token
    {  # longer than the context: lm-eval keeps the last CONTEXT + 1 tokens
        "context": "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough--so it "
        "was no great surprise to me to hear that, in the height of his glory,",
        "continuation": " he had dropped his painting",
    },
]
CHOICE_DOCS = [
    {"question": "It was the last", "choices": [" time", " picture", " dog"], "label": 0},
    {"question": "Mrs. Gisburn", "choices": [" said", " had", " was"], "label": 1},
]
ROLLING_DOCS = [
    {"text": "I had always thought Jack Gisburn rather a cheap genius--though a good fellow enough."},
    {"text": "Café au lait, naïve façade: “Jack” — Gisburn’s picture was hung in the drawing-room. " * 3},
]


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A saved folder (init-model, book init for log-probabilities that differ) whose tokenizer says 1000."""
    root = tmp_path_factory.mktemp("evaluate")
    verdict = os.fspath(SHARED_DATA / "the-verdict.txt")
    assert main(["train-tokenizer", "--files", verdict, "--vocab-size", "300", "--out", str(root / "tok"),
                 "--model-max-length", "1000"]) == 0  # fmt: skip
    args = ["--tokenizer", str(root / "tok"), "--context-length", str(CONTEXT), "--init-scheme", "book"]
    assert main(["init-model", "--out", str(root / "model"), *args]) == 0
    return root / "model"


@pytest.fixture(scope="module")
def model(model_dir):
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    tok = load_tokenizer(model_dir.parent / "tok")  # model_max_length 1000: the context must come from the config
    assert tok.model_max_length == 1000
    return tok


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory):
    """A folder of lm-eval task YAMLs over local JSONL files (absolute paths; nothing is downloaded)."""
    root = tmp_path_factory.mktemp("tasks")
    data = {
        "ll": _write_jsonl(root / "ll.jsonl", LOGLIKELIHOOD_DOCS),
        "mc": _write_jsonl(root / "mc.jsonl", CHOICE_DOCS),
        "rolling": _write_jsonl(root / "rolling.jsonl", ROLLING_DOCS),
    }
    tasks = root / "tasks"
    tasks.mkdir()
    common = "dataset_path: json\ntest_split: test\n"
    (tasks / "ll.yaml").write_text(
        f"task: scratch_ll\n{common}dataset_kwargs:\n  data_files:\n    test: {data['ll']}\n"
        "output_type: loglikelihood\ndoc_to_text: '{{context}}'\ndoc_to_target: '{{continuation}}'\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (tasks / "mc.yaml").write_text(
        f"task: scratch_mc\n{common}dataset_kwargs:\n  data_files:\n    test: {data['mc']}\n"
        "output_type: multiple_choice\ndoc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\n"
        "doc_to_target: '{{label}}'\ntarget_delimiter: ''\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )
    (tasks / "rolling.yaml").write_text(
        f"task: scratch_rolling\n{common}dataset_kwargs:\n  data_files:\n    test: {data['rolling']}\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: '{{text}}'\n"
        "metric_list:\n  - metric: bits_per_byte\n    aggregation: bits_per_byte\n    higher_is_better: false\n"
    )
    return tasks


def _start(tok) -> int:
    return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id


@torch.no_grad()
def direct_loglikelihood(model, tok, context: str, continuation: str) -> tuple[float, bool]:
    """log p(continuation | context) and whether every continuation token is the argmax, from one forward pass."""
    encode = lambda text: tok(text, verbose=False)["input_ids"]
    ctx = encode(context) if context else [_start(tok)]
    cont = encode(continuation)
    assert encode(context + continuation) == (ctx if context else []) + cont  # an unambiguous split
    ids = (ctx + cont)[-(CONTEXT + 1) :]  # what fits: the last CONTEXT inputs predict the last CONTEXT tokens
    logprobs = model(torch.tensor([ids[:-1]])).logits[0].float().log_softmax(-1)[-len(cont) :]
    targets = torch.tensor(cont)
    picked = logprobs.gather(-1, targets[:, None]).squeeze(-1)
    return float(picked.sum()), bool((logprobs.argmax(-1) == targets).all())


@torch.no_grad()
def direct_nll(model, tok, text: str) -> float:
    """Negative log-likelihood of every token of `text`, each given up to CONTEXT previous tokens (a pass per token)."""
    ids = [_start(tok), *tok(text, add_special_tokens=False, verbose=False)["input_ids"]]
    total = 0.0
    for j in range(1, len(ids)):
        window = ids[max(0, j - CONTEXT) : j]
        logprobs = model(torch.tensor([window])).logits[0, -1].float().log_softmax(-1)
        total -= float(logprobs[ids[j]])
    return total


def _check_loglikelihoods(results, model, tok) -> float:
    """Max |lm-eval - direct| over every request of the loglikelihood and multiple-choice tasks."""
    worst, requests, spread = 0.0, 0, []
    for task in ("scratch_ll", "scratch_mc"):
        for sample in results["samples"][task]:
            for (context, continuation), (ll, greedy) in zip(sample["arguments"], sample["filtered_resps"]):
                expected, expected_greedy = direct_loglikelihood(model, tok, context, continuation)
                worst = max(worst, abs(ll - expected))
                assert greedy == expected_greedy
                requests += 1
                spread.append(expected)
    assert requests == len(LOGLIKELIHOOD_DOCS) + sum(len(d["choices"]) for d in CHOICE_DOCS)
    assert max(spread) - min(spread) > 10  # the references differ: a wrong context would show
    return worst


# ----------------------------------------------------------------------------- windows and perplexity


def test_windows_score_every_token_once_with_the_promised_context():
    for n in range(2, 40):
        ids = list(range(1000, 1000 + n))
        for length in (1, 2, 5, 8):
            for stride in range(1, length + 1):
                windows = list(score_windows(ids, length, stride))
                scored = [t for _, targets in windows for t in targets if t != -100]
                assert scored == ids[1:]
                for k, (inputs, targets) in enumerate(windows):
                    assert len(inputs) == len(targets) <= length
                    assert inputs == ids[inputs[0] - 1000 : inputs[0] - 1000 + len(inputs)]  # contiguous
                    assert targets[-1] == inputs[-1] + 1  # position t predicts the next id
                    if k:  # later windows: full length, at most `stride` new tokens, each after >= length - stride
                        new = sum(t != -100 for t in targets)
                        assert len(inputs) == length and 1 <= new <= stride


def test_windows_with_the_context_as_stride_are_lm_eval_rolling_windows():
    lm_utils = pytest.importorskip("lm_eval.utils", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    for n in range(1, 40):
        tokens = list(range(100, 100 + n))
        for length in (1, 3, 8):
            for stride in range(1, length + 1):  # lm-eval's context_len = length - stride + 1
                ours = list(score_windows([7, *tokens], length, stride))
                theirs = list(lm_utils.get_rolling_token_windows(tokens, 7, length, length - stride + 1))
                assert [i for i, _ in ours] == [i for i, _ in theirs]
                assert [[t for t in targets if t != -100] for _, targets in ours] == [p for _, p in theirs]


def test_perplexity_equals_the_direct_token_by_token_sum(model, tokenizer):
    text = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")[:300]
    reference = direct_nll(model, tokenizer, text)
    n_tokens = len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
    assert n_tokens > 2 * CONTEXT  # several windows
    result = perplexity(model, tokenizer, text, stride=1, batch_size=7)
    assert result.tokens == n_tokens and result.bytes == len(text.encode("utf-8")) and result.documents == 1
    assert result.nll == pytest.approx(reference, abs=TOLERANCE)
    assert result.loss == pytest.approx(reference / n_tokens)
    assert result.perplexity == pytest.approx(math.exp(reference / n_tokens))
    assert result.bits_per_byte == pytest.approx(reference / math.log(2) / len(text.encode("utf-8")))
    default = perplexity(model, tokenizer, text)  # half the context: fewer passes, slightly less context
    assert default.stride == CONTEXT // 2 and default.tokens == n_tokens and default.windows < result.windows
    assert default.nll == pytest.approx(reference, rel=0.05)


def test_perplexity_of_documents_counts_utf8_bytes_and_skips_empty_ones(model, tokenizer):
    docs = [d["text"] for d in ROLLING_DOCS]
    alone = [perplexity(model, tokenizer, d, stride=CONTEXT) for d in docs]
    both = perplexity(model, tokenizer, [docs[0], "", docs[1]], stride=CONTEXT, batch_size=3)
    assert both.documents == 2 and both.bytes == sum(len(d.encode("utf-8")) for d in docs) > sum(map(len, docs))
    assert both.nll == pytest.approx(sum(r.nll for r in alone), abs=TOLERANCE)
    assert both.tokens == sum(r.tokens for r in alone) and both.windows == sum(r.windows for r in alone)
    assert model.training is False


def test_perplexity_rejects_a_bad_stride_and_an_empty_text(model, tokenizer):
    with pytest.raises(ValueError, match="stride must be an integer from 1 to the context length 32, got 33"):
        perplexity(model, tokenizer, "some text", stride=CONTEXT + 1)
    with pytest.raises(ValueError, match="no token to score"):
        perplexity(model, tokenizer, ["", ""])


# ----------------------------------------------------------------------------- lm-eval


def test_lm_eval_hf_backend_on_a_saved_folder_equals_the_direct_loglikelihoods(model_dir, model, tokenizer, task_dir):
    pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    results = run_lm_eval(
        model_dir, [os.fspath(task_dir / "ll.yaml"), os.fspath(task_dir / "mc.yaml")],
        batch_size=3, device="cpu", log_samples=True,
    )  # fmt: skip
    assert results["max_length"] == CONTEXT  # from the config (the tokenizer says 1000)
    assert set(results["results"]) == {"scratch_ll", "scratch_mc"}
    worst = _check_loglikelihoods(results, model, tokenizer)
    print(f"hf backend: max |loglikelihood diff| = {worst:.3g}")
    assert worst < TOLERANCE


def test_lm_eval_on_a_model_object_equals_the_direct_loglikelihoods_and_rolling_perplexity(model, tokenizer, task_dir):
    pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    from lm_eval.models.huggingface import HFLM

    assert HFLM(pretrained=model, tokenizer=tokenizer).max_length == CONTEXT
    results = run_lm_eval(model, [os.fspath(task_dir)], tokenizer=tokenizer, batch_size=2, log_samples=True)
    assert set(results["results"]) == {"scratch_ll", "scratch_mc", "scratch_rolling"}  # the whole folder
    worst = _check_loglikelihoods(results, model, tokenizer)
    print(f"in-process HFLM: max |loglikelihood diff| = {worst:.3g}")
    assert worst < TOLERANCE
    # loglikelihood_rolling = our perplexity with disjoint windows (stride = context), document by document
    docs = [d["text"] for d in ROLLING_DOCS]
    rolling = {s["doc"]["text"]: s["filtered_resps"][0] for s in results["samples"]["scratch_rolling"]}
    for doc in docs:
        assert -rolling[doc] == pytest.approx(perplexity(model, tokenizer, doc, stride=CONTEXT).nll, abs=TOLERANCE)
    ours = perplexity(model, tokenizer, docs, stride=CONTEXT)
    assert ours.windows > len(docs)  # the long document takes several windows
    theirs = results["results"]["scratch_rolling"]["bits_per_byte,none"]
    assert ours.bits_per_byte == pytest.approx(theirs, rel=1e-6)


def test_task_names_files_and_folders_resolve_and_bad_ones_are_named(task_dir):
    pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    names, _ = resolve_tasks([os.fspath(task_dir / "mc.yaml"), "scratch_ll"])  # a file, then a name it indexed
    assert names == ["scratch_mc", "scratch_ll"]
    with pytest.raises(FileNotFoundError, match="task file or folder not found: .*nope.yaml"):
        resolve_tasks([os.fspath(task_dir / "nope.yaml")])
    (task_dir.parent / "empty").mkdir(exist_ok=True)
    with pytest.raises(ValueError, match="empty: defines no lm-eval task"):
        resolve_tasks([os.fspath(task_dir.parent / "empty")])


def test_an_unknown_task_name_is_one_line_naming_it(model_dir, capsys):
    pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    assert main(["evaluate", str(model_dir), "--task", "no_such_task_xyz"]) == 2  # indexes lm-eval's own tasks
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown lm-eval task 'no_such_task_xyz'" in err


def test_without_the_extra_a_task_is_one_line_naming_it(model_dir, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "lm_eval" or m.startswith("lm_eval.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what `import lm_eval` meets where it is not installed
    assert main(["evaluate", str(model_dir), "--task", "hellaswag"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and LM_EVAL_EXTRA in err


# ----------------------------------------------------------------------------- the verb


def test_evaluate_cli_reports_perplexity_and_writes_json(model_dir, model, tokenizer, tmp_path, capsys):
    text = (SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8")[:2000]
    data = tmp_path / "sample.txt"
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "results" / "ppl.json"
    assert main(["evaluate", str(model_dir), "--data", str(data), "--out", str(out), "--stride", "16"]) == 0
    printed = capsys.readouterr().out
    assert "perplexity" in printed and "bits per byte" in printed and f"results -> {out}" in printed
    saved = json.loads(out.read_text(encoding="utf-8"))
    expected = perplexity(model, load_tokenizer(model_dir), text, stride=16)
    assert saved["model"] == str(model_dir) and saved["perplexity"]["data"] == str(data)
    assert saved["perplexity"]["nll"] == pytest.approx(expected.nll, abs=TOLERANCE)
    assert saved["perplexity"]["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-6)
    assert saved["perplexity"]["stride"] == 16 and saved["perplexity"]["context_length"] == CONTEXT
    assert f"{saved['perplexity']['perplexity']:.4f}" in printed
    assert [p.name for p in out.parent.iterdir()] == ["ppl.json"]  # no temporary file left behind
    assert main(["evaluate", str(model_dir), "--data", str(data), "--out", str(out)]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err


def test_evaluate_cli_scores_jsonl_records_and_runs_local_tasks(model_dir, model, task_dir, tmp_path, capsys):
    pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    data = _write_jsonl(tmp_path / "docs.jsonl", [{"body": d["text"]} for d in ROLLING_DOCS])
    out = tmp_path / "all.json"
    args = ["--data", str(data), "--text-field", "body", "--task", str(task_dir / "mc.yaml"), "--out", str(out)]
    assert main(["evaluate", str(model_dir), *args]) == 0
    printed = capsys.readouterr().out
    assert "scratch_mc" in printed and "bits per byte" in printed
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["perplexity"]["documents"] == 2
    assert saved["lm_eval"]["max_length"] == CONTEXT and saved["lm_eval"]["n-samples"]["scratch_mc"]["effective"] == 2
    picks = [
        max(range(len(d["choices"])), key=lambda i: direct_loglikelihood(model, load_tokenizer(model_dir),
                                                                          d["question"], d["choices"][i])[0])
        for d in CHOICE_DOCS
    ]  # fmt: skip
    accuracy = sum(p == d["label"] for p, d in zip(picks, CHOICE_DOCS)) / len(CHOICE_DOCS)
    assert saved["lm_eval"]["results"]["scratch_mc"]["acc,none"] == pytest.approx(accuracy)


@pytest.mark.parametrize(
    ("make", "args", "message"),
    [
        (None, ["--data", "{tmp}/missing.txt"], "data source not found: {tmp}/missing.txt"),
        ("", ["--data", "{tmp}/empty.txt"], "{tmp}/empty.txt: file is empty"),
        ('{"text": ""}\n', ["--data", "{tmp}/empty.jsonl"], "{tmp}/empty.jsonl: no text to score"),
        ("hello", ["--data", "{tmp}/a.txt", "--stride", "0"], "stride must be an integer from 1"),
        (None, [], "nothing to evaluate: give --data"),
        (None, ["--task", "{tmp}/nope.yaml"], "task file or folder not found: {tmp}/nope.yaml"),
    ],
)
def test_evaluate_cli_bad_input_is_one_line_and_exit_2(model_dir, tmp_path, capsys, make, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    if make is not None:
        (tmp_path / os.path.basename(args[1])).write_text(make, encoding="utf-8")
    if "--task" in args:
        pytest.importorskip("lm_eval", reason=f"needs the lm-eval extra: {LM_EVAL_EXTRA}")
    assert main(["evaluate", str(model_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.format(tmp=tmp_path) in err


def test_evaluate_is_a_verb_of_the_evaluate_family():
    from hf_scratchgpt.cli import VERBS
    from hf_scratchgpt.commands import evaluate

    assert VERBS["evaluate"] == {"evaluate": evaluate}
