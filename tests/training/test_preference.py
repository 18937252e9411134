"""DPO end to end through the CLI: rewards logged and rising, before/after responses, LoRA's reference, bad input."""

import json
import random
import re

import pytest
import torch
from safetensors.torch import load_file

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.cli import main
from hf_scratchgpt.folders import write_model_folder
from hf_scratchgpt.prompts import chat_template, format_input, response_prefix
from hf_scratchgpt.tokenization import load_tokenizer, train_bpe_tokenizer
from hf_scratchgpt.training.tracking import read_metrics

from ..card_checks import check_card
from ..conftest import tiny_config

COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow", "rose": "red"}


def _pairs(n, seed=0):
    """The right colour is chosen, another colour rejected."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        thing = list(COLOURS)[i % len(COLOURS)]
        wrong = rng.choice([c for c in COLOURS.values() if c != COLOURS[thing]])
        rows.append(
            {"instruction": f"What colour is the {thing}?", "input": "", "chosen": COLOURS[thing], "rejected": wrong}
        )
    return rows


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """A tiny ScratchGPT whose tokenizer carries the alpaca chat template (as an instruction-tuned folder does)."""
    texts = [format_input(r) + response_prefix("alpaca") + r["chosen"] for r in _pairs(60)]
    tok = train_bpe_tokenizer(texts, vocab_size=400, model_max_length=64, chat_template="alpaca")
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tok), context_length=64, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("sft") / "final"
    write_model_folder(
        out,
        ScratchGPTForCausalLM(config),
        tok,
        command="test",
        card_fields={"weights": "random", "provenance": "a test fixture"},
    )  # noqa: E501
    return out


@pytest.fixture(scope="module")
def pairs_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "colours-prefs.json"
    path.write_text(json.dumps(_pairs(120)), encoding="utf-8")
    return path


def _args(model, data, out, *extra):
    return [
        "finetune-dpo", "--model", str(model), "--data", str(data), "--out", str(out), "--seed", "0",
        "--eval-every", "20", "--eval-batches", "2", "--lr", "5e-3", "--beta", "0.5", "--max-new-tokens", "4",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(chat_model, pairs_json, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "dpo"
    assert main(_args(chat_model, pairs_json, out, "--max-steps", "100")) == 0
    return out


def test_rewards_are_logged_and_the_preference_is_learned(trained):
    logged = [row for row in read_metrics(trained / "metrics.jsonl") if "val_loss" in row]
    keys = ("loss", "rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy")
    for row in logged:
        for split in ("train", "val"):
            assert all(f"{split}_{k}" in row for k in keys), row
            assert row[f"{split}_reward_margin"] == pytest.approx(
                row[f"{split}_rewards_chosen"] - row[f"{split}_rewards_rejected"]
            )
    assert logged[-1]["val_reward_margin"] > logged[0]["val_reward_margin"]
    assert logged[-1]["val_loss"] < logged[0]["val_loss"] < 0.75  # it starts near log 2
    results = json.loads((trained / "final" / "eval_results.json").read_text())
    assert {k: results[k]["pairs"] for k in ("train", "val", "test")} == {"train": 102, "val": 6, "test": 12}
    assert results["val"]["reward_accuracy"] > 0.5 and results["train"]["reward_accuracy"] > 0.5
    assert results["train"]["loss"] < 0.69


def test_test_responses_before_and_after_are_written_and_counted(trained):
    lines = [json.loads(x) for x in (trained / "test_responses.jsonl").read_text().splitlines()]
    pairs = _pairs(120)[102:114]  # the book's order: train 102, test 12, validation 6
    assert [(x["chosen"], x["rejected"]) for x in lines] == [(p["chosen"], p["rejected"]) for p in pairs]
    assert all(
        x["prompt"].endswith("### Response:\n") and p["instruction"] in x["prompt"] for x, p in zip(lines, pairs)
    )
    gen = json.loads((trained / "final" / "eval_results.json").read_text())["test_generation"]
    for which in ("chosen", "rejected"):
        for when in ("before", "after"):
            assert gen[f"{which}_{when}"] == pytest.approx(sum(x[when] == x[which] for x in lines) / len(lines))
    for when in ("before", "after"):  # whether each response ended with the end token, and how often
        assert all(isinstance(x[f"ended_{when}"], bool) for x in lines)
        assert gen[f"ended_with_eos_{when}"] == pytest.approx(sum(x[f"ended_{when}"] for x in lines) / len(lines))
    # the reference is the starting folder: its greedy answers are the "before" column
    tok = load_tokenizer(trained / "final")
    assert tok.chat_template == chat_template("alpaca")


def test_the_card_reports_rewards_and_responses(trained):
    final = trained / "final"
    metrics = {"reward_accuracy", "reward_margin", "loss"}
    check_card(final, pipeline_tag="text-generation", datasets=["colours-prefs.json"], metrics=metrics)
    card = (final / "README.md").read_text()
    results = json.loads((final / "eval_results.json").read_text())
    assert f"| validation | {results['val']['dpo_loss']:.4f} |" in card and "`test_responses.jsonl`" in card
    assert "| beta | 0.5 |" in card and "the base model, frozen (a copy)" in card


def test_lora_uses_the_base_with_adapters_disabled_as_its_reference(chat_model, pairs_json, trained, tmp_path):
    out = tmp_path / "lora"
    assert main(_args(chat_model, pairs_json, out, "--max-steps", "30", "--train-mode", "lora", "--rank", "4")) == 0
    provenance = json.loads((out / "data_provenance.json").read_text())
    assert provenance["reference"] == "adapters disabled"
    adapter = json.loads((out / "final" / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM" and adapter["r"] == 4
    # both runs' references are the starting model: the same greedy answers before tuning
    before = [json.loads(x)["before"] for x in (out / "test_responses.jsonl").read_text().splitlines()]
    assert before == [json.loads(x)["before"] for x in (trained / "test_responses.jsonl").read_text().splitlines()]
    # a finished run resumed without test responses: the old responses (of the same weights, here) are removed
    assert main(["finetune-dpo", "--out", str(out), "--resume", "auto", "--generate-test", "false"]) == 0
    assert not (out / "test_responses.jsonl").exists()
    assert "The test prompts were not answered" in (out / "final" / "README.md").read_text()
    merged = load_file(out / "final" / "model.safetensors")
    start = load_file(chat_model / "model.safetensors")
    assert any(not torch.equal(merged[k], start[k]) for k in start)  # the merged update moved the weights


def test_identical_and_long_pairs_are_left_out_with_a_count(chat_model, tmp_path, capsys):
    rows = _pairs(40)
    rows[3] = {**rows[3], "rejected": rows[3]["chosen"]}
    rows[5] = {**rows[5], "instruction": "word " * 80}
    path = tmp_path / "some-bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    extra = ("--max-steps", "2", "--batch-size", "4", "--sft-weight", "0.5", "--generate-test", "false")
    assert main(_args(chat_model, path, tmp_path / "out", *extra)) == 0
    out = capsys.readouterr().out
    assert "left out pairs whose chosen and rejected responses are identical (no preference to learn): 1 train" in out
    assert "left out pairs longer than 64 tokens (end token included): 1 train" in out
    provenance = json.loads((tmp_path / "out" / "data_provenance.json").read_text())
    assert provenance["train_pairs"] == 32 and provenance["identical_left_out"]["train"] == 1
    # with --sft-weight the logged loss is what is minimised: DPO's plus the weight times the chosen answers' NLL
    last = [r for r in read_metrics(tmp_path / "out" / "metrics.jsonl") if "val_loss" in r][-1]
    assert last["val_loss"] == pytest.approx(last["val_dpo_loss"] + 0.5 * last["val_chosen_nll"])
    card = (tmp_path / "out" / "final" / "README.md").read_text()
    assert "The test prompts were not answered" in card and "n/a of the responses" not in card
    assert not (tmp_path / "out" / "test_responses.jsonl").exists()


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        ([{"instruction": "a", "chosen": "b"}], (), r"bad\.json: record 0: missing field 'rejected'"),
        ([{"instruction": "a", "rejected": "b"}], (), r"bad\.json: record 0: missing field 'chosen'"),
        (_pairs(20), ("--beta", "0"), r"beta must be > 0, got 0"),
        (_pairs(20), ("--beta", "-0.1"), r"beta must be > 0"),
        (_pairs(20), ("--sft-weight", "-1"), r"sft_weight must be >= 0, got -1"),
        (_pairs(20), ("--prompt-style", "vicuna"), r"prompt_style must be one of"),
        (_pairs(20), ("--overlong", "cut"), r"overlong must be one of"),
        ([{**p, "rejected": p["chosen"]} for p in _pairs(20)], (), r"every training pair has identical"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(chat_model, tmp_path, capsys, rows, extra, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    assert main(_args(chat_model, path, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("scratchgpt finetune-dpo: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_a_chat_template_needs_a_prompt_style(tmp_path, chat_model, pairs_json, capsys):
    folder = tmp_path / "plain"
    tok = load_tokenizer(chat_model)
    tok.chat_template = None
    model = ScratchGPTForCausalLM.from_pretrained(chat_model)
    write_model_folder(folder, model, tok, command="test", card_fields={"weights": "w", "provenance": "p"})
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    assert not getattr(load_tokenizer(folder), "chat_template", None)
    assert main(_args(folder, pairs_json, tmp_path / "out")) == 2
    assert "has no chat template; use alpaca or phi3" in capsys.readouterr().err
    assert main(_args(folder, pairs_json, tmp_path / "out", "--prompt-style", "alpaca", "--max-steps", "1")) == 0
