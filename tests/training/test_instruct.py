"""Instruction fine-tuning end to end through the CLI: train, responses and scores, reload fresh, LoRA, bad input."""

import json
import os
import re
import subprocess
import sys
import textwrap

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.cli import main
from hf_scratchgpt.folders import write_model_folder
from hf_scratchgpt.judge import judge_prompt
from hf_scratchgpt.prompts import chat_template, format_input, record_to_messages, response_prefix
from hf_scratchgpt.tokenization import load_tokenizer, train_bpe_tokenizer
from hf_scratchgpt.training.pretrain import NextTokenObjective, shift_positions
from hf_scratchgpt.training.tracking import read_metrics

from ..card_checks import check_card
from ..conftest import tiny_config

COLOURS = {"sky": "blue", "grass": "green", "snow": "white", "coal": "black", "sun": "yellow", "rose": "red"}


def _records(n):
    """Questions with one exactly known answer each, cycling through a small set (test answers are learnable)."""
    things = list(COLOURS)
    rows = []
    for i in range(n):
        thing = things[i % len(things)]
        if i % 3 == 0:
            rows.append({"instruction": "Name the colour.", "input": thing, "output": COLOURS[thing]})
        else:
            rows.append({"instruction": f"What colour is the {thing}?", "input": "", "output": COLOURS[thing]})
    return rows


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny ScratchGPT causal-LM folder with its own BPE tokenizer (what `pretrain` writes)."""
    root = tmp_path_factory.mktemp("base")
    texts = [format_input(r) + response_prefix("alpaca") + r["output"] for r in _records(60)]
    tok = train_bpe_tokenizer(texts, vocab_size=400, model_max_length=64)
    torch.manual_seed(0)
    config = tiny_config(
        vocab_size=len(tok), context_length=64, eos_token_id=tok.eos_token_id, pad_token_id=tok.eos_token_id
    )
    card = {"weights": "random", "provenance": "a test fixture"}
    write_model_folder(root / "final", ScratchGPTForCausalLM(config), tok, command="test", card_fields=card)
    return root / "final"


@pytest.fixture(scope="module")
def data_json(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "colours.json"
    path.write_text(json.dumps(_records(120)), encoding="utf-8")
    return path


def _args(base_model, data, out, *extra):
    return [
        "finetune-instruct", "--model", str(base_model), "--data", str(data), "--out", str(out), "--seed", "0",
        "--batch-size", "8", "--eval-every", "20", "--eval-batches", "2", "--lr", "3e-3", "--max-new-tokens", "8",
        *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(base_model, data_json, tmp_path_factory):
    """A run in `all` mode with the prompt masked: the tiny model learns the answers in a few dozen steps."""
    out = tmp_path_factory.mktemp("runs") / "sft"
    assert main(_args(base_model, data_json, out, "--mask-prompt", "--max-steps", "100")) == 0
    return out


def test_run_writes_a_chat_folder_responses_and_scores(trained):
    final = trained / "final"
    tok = load_tokenizer(final)
    assert tok.chat_template == chat_template("alpaca")  # the prompt style it was trained with
    gen = json.loads((final / "generation_config.json").read_text())
    assert gen["eos_token_id"] == tok.eos_token_id
    results = json.loads((final / "eval_results.json").read_text())
    assert {"train", "val", "test", "test_generation"} <= results.keys()
    assert results["test"]["examples"] == 12 and results["val"]["examples"] == 6  # 10 % / 5 % of 120, file order
    lines = [json.loads(x) for x in (trained / "test_responses.jsonl").read_text().splitlines()]
    records = _records(120)[102:114]  # the book's order: train 102, test 12, validation 6
    assert [(x["instruction"], x["input"], x["reference"]) for x in lines] == [
        (r["instruction"], r["input"], r["output"]) for r in records
    ]
    generated = results["test_generation"]
    matches = sum(x["response"] == x["reference"] for x in lines) / len(lines)
    assert generated["exact_match"] == pytest.approx(matches)
    assert generated["ended_with_eos"] == pytest.approx(sum(x["ended"] for x in lines) / len(lines))
    assert generated["exact_match"] >= 0.9 and generated["ended_with_eos"] >= 0.9  # it learned to answer and stop
    assert 0.9 <= generated["token_f1"] <= 1 and 0.9 <= generated["rouge_l"] <= 1
    card = (final / "README.md").read_text()
    assert "pipeline_tag: text-generation" in card and "{" + "exact_match}" not in card
    assert f"| exact match | {100 * generated['exact_match']:.2f} % |" in card
    metrics = {"exact_match", "token_f1", "rouge_l", "loss"}
    check_card(final, pipeline_tag="text-generation", datasets=["colours.json"], metrics=metrics)
    logged = read_metrics(trained / "metrics.jsonl")
    assert logged[0]["val_loss"] > logged[-1]["val_loss"]
    assert any("sample" in row for row in logged)


def test_the_chat_template_renders_the_training_prompt_and_generate_stops(trained):
    final = trained / "final"
    tok = load_tokenizer(final)
    model = ScratchGPTForCausalLM.from_pretrained(final).eval()
    record = _records(120)[103]
    messages = record_to_messages(record)
    ids = tok.apply_chat_template(messages[:-1], add_generation_prompt=True, return_dict=True, return_tensors="pt")
    assert tok.decode(ids["input_ids"][0]) == format_input(record) + response_prefix("alpaca")
    out = model.generate(**ids, max_new_tokens=10, do_sample=False)  # the saved generation config: stop at eos
    new = out[0, ids["input_ids"].shape[1] :].tolist()
    assert new[-1] == tok.eos_token_id and tok.decode(new[:-1]) == record["output"]


FRESH = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    sys.modules["hf_scratchgpt"] = None  # the package is unimportable here: only the folder's own code can run
    folder, messages = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=10, do_sample=False)
    reply = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    chat = pipeline("text-generation", model=folder, trust_remote_code=True)
    conversation = chat(messages, max_new_tokens=10, do_sample=False)[0]["generated_text"]
    print(json.dumps({"module": type(model).__module__, "reply": reply, "conversation": conversation}))
    """
)


def test_saved_folder_chats_in_a_fresh_process_without_the_package(trained, tmp_path):
    messages = [{"role": "user", "content": "What colour is the snow?"}]
    (tmp_path / "fresh.py").write_text(FRESH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "fresh.py"), str(trained / "final"), json.dumps(messages)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["module"].startswith("transformers_modules.")
    assert fresh["reply"] == "white"
    assert fresh["conversation"] == [*messages, {"role": "assistant", "content": "white"}]


def test_lora_and_packing_write_a_merged_model_and_a_causal_lm_adapter(base_model, data_json, tmp_path):
    out = tmp_path / "lora"
    extra = ["--train-mode", "lora", "--rank", "4", "--alpha", "8", "--max-steps", "6", "--packing",
             "--prompt-style", "phi3", "--generate-test", "false"]  # fmt: skip
    assert main(_args(base_model, data_json, out, *extra)) == 0
    final, adapter = out / "final", out / "final" / "adapter"
    assert load_tokenizer(final).chat_template == chat_template("phi3")
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["task_type"] == "CAUSAL_LM" and config["base_model_name_or_path"] == str(base_model.resolve())
    assert not any(".lora." in k for k in load_file(final / "model.safetensors"))
    check_card(adapter, pipeline_tag="text-generation", library_name="peft", datasets=["colours.json"])
    merged = AutoModelForCausalLM.from_pretrained(final).eval()
    with_adapter = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_model), adapter).eval()
    ids = torch.randint(0, merged.config.vocab_size, (2, 10))
    assert torch.allclose(with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5)
    provenance = json.loads((out / "data_provenance.json").read_text())
    assert provenance["packing"] and provenance["packed_train_rows"] < provenance["train_examples"]
    assert not (out / "test_responses.jsonl").exists()


@pytest.mark.parametrize(
    "records, extra, message",
    [
        (
            [{"instruction": "a", "output": "b"}, {"instruction": "c"}],
            [],
            r"record 1: missing or non-text field 'output'",
        ),
        (_records(20), ["--prompt-style", "llama"], r"prompt_style must be one of \('alpaca', 'phi3', 'chat'\)"),
        (_records(20), ["--max-length", "500"], "max_length 500 is longer than the model's context length 64"),
        ([{"instruction": "x " * 80, "input": "", "output": "y"}] * 10, [], "no training example fits in 64 tokens"),
        (_records(20), ["--position-shift", "--book-mode"], "position_shift draws from the global RNG every step"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(base_model, tmp_path, capsys, records, extra, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    assert main(_args(base_model, path, tmp_path / "out", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("scratchgpt finetune-instruct: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_long_examples_are_left_out_with_a_count_and_an_unreachable_judge_is_one_line(
    base_model, tmp_path, capsys, closed_port
):
    records = _records(40)
    records[5] = {"instruction": "word " * 80, "input": "", "output": "long"}  # a training example over 64 tokens
    path = tmp_path / "some-long.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    url = f"http://127.0.0.1:{closed_port}/v1"
    assert main(_args(base_model, path, tmp_path / "out", "--max-steps", "2", "--judge-url", url)) == 0
    out = capsys.readouterr().out
    assert "left out examples longer than 64 tokens (end token included): 1 train" in out
    judge_lines = [line for line in out.splitlines() if line.startswith("judge: ") and url in line]
    assert len(judge_lines) == 3  # not reachable before training, "scoring ...", and why it could not
    assert "is not reachable now (connection refused" in judge_lines[0]
    results = json.loads((tmp_path / "out" / "final" / "eval_results.json").read_text())
    assert url in results["test_generation"]["judge"]["error"]
    assert "exact_match" in results["test_generation"]  # the other results are written
    assert results["test_generation"]["responses"] == results["test"]["examples"]
    card = (tmp_path / "out" / "final" / "README.md").read_text()
    assert "| LLM judge (0-100, the book's prompt) | unavailable (" in card
    assert json.loads((tmp_path / "out" / "data_provenance.json").read_text())["left_out"]["train"] == 1


def test_the_judge_scores_the_test_responses_over_http(base_model, data_json, tmp_path, judge_server, monkeypatch):
    monkeypatch.setenv("SCRATCHGPT_JUDGE_API_KEY", "sk-judge-secret")
    out = tmp_path / "judged"
    extra = ["--max-steps", "2", "--judge-url", judge_server.base_url, "--judge-model", "tiny-judge"]
    assert main(_args(base_model, data_json, out, *extra)) == 0
    judge = json.loads((out / "final" / "eval_results.json").read_text())["test_generation"]["judge"]
    lines = [json.loads(x) for x in (out / "test_responses.jsonl").read_text().splitlines()]
    assert judge["judge_model"] == "tiny-judge" and len(judge["scores"]) == len(lines) == len(judge_server.requests)
    # the server answers 100 for a response equal to the reference, 10 for another, nothing for an empty one
    expected = [None if not x["response"] else 100 if x["response"] == x["reference"] else 10 for x in lines]
    assert judge["scores"] == expected
    sent = [r["payload"]["messages"][0]["content"] for r in judge_server.requests]
    assert sent == [judge_prompt({**x, "output": x["reference"]}, x["response"]) for x in lines]
    assert all(r["headers"]["Authorization"] == "Bearer sk-judge-secret" for r in judge_server.requests)
    for path in out.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".jsonl", ".yaml", ".md", ".txt"):
            assert "sk-judge-secret" not in path.read_text(encoding="utf-8", errors="replace")


def test_splits_may_be_missing_or_empty_and_no_records_is_one_line(base_model, tmp_path, capsys):
    folder = tmp_path / "only-train"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records(24)), encoding="utf-8")
    assert main(_args(base_model, folder, tmp_path / "a", "--max-steps", "1")) == 0  # no validation, no test
    assert not (tmp_path / "a" / "test_responses.jsonl").exists()
    data = tmp_path / "all-train.json"
    data.write_text(json.dumps(_records(24)), encoding="utf-8")
    extra = ["--max-steps", "1", "--val-fraction", "0", "--test-fraction", "0"]
    assert main(_args(base_model, data, tmp_path / "b", *extra)) == 0
    assert json.loads((tmp_path / "b" / "data_provenance.json").read_text())["train_examples"] == 24
    empty = tmp_path / "empty.json"
    empty.write_text("[]", encoding="utf-8")
    capsys.readouterr()
    assert main(_args(base_model, empty, tmp_path / "c")) == 2
    assert "empty.json: no records" in capsys.readouterr().err and not (tmp_path / "c").exists()


def test_shift_positions_stays_in_the_context_and_keeps_packed_restarts():
    ids = torch.zeros((3, 10), dtype=torch.long)
    torch.manual_seed(0)
    draws = [shift_positions({"input_ids": ids}, context=16)["position_ids"] for _ in range(200)]
    for positions in draws:
        assert (positions - positions[:, :1] == torch.arange(10)).all()  # each row moves as a whole
        assert positions.max() <= 15
    assert {int(p[0, 0]) for p in draws} == set(range(7))  # every offset from 0 to 16 - 10 is drawn
    packed = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3, 0]])
    torch.manual_seed(1)
    row = {"input_ids": ids[:1], "position_ids": packed}
    shifted = [shift_positions(row, context=16)["position_ids"] for _ in range(100)]
    assert all((s - packed == s[0, 0]).all() for s in shifted)  # the restarts are kept
    assert {int(s[0, 0]) for s in shifted} == set(range(13))  # up to 16 - 1 - 3
    full = shift_positions({"input_ids": torch.zeros((1, 16), dtype=torch.long)}, context=16)["position_ids"]
    assert (full == torch.arange(16)).all()  # no room: no shift
    with pytest.raises(ValueError, match="position ids up to 16 do not fit in the context of 16"):
        shift_positions({"input_ids": torch.zeros((1, 17), dtype=torch.long)}, context=16)


def test_position_shift_trains_on_shifted_positions_and_evaluates_unshifted():
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config())
    ids = torch.randint(0, 97, (4, 12))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    objective = NextTokenObjective()
    objective.position_shift = True
    torch.manual_seed(5)
    expected = model(**shift_positions(batch, context=32)).loss
    torch.manual_seed(5)
    loss, targets = objective.loss(model, batch)
    assert torch.equal(loss, expected) and targets == 4 * 11  # every next token
    assert not torch.allclose(loss, model(**batch).loss)  # the positions did move
    plain = NextTokenObjective()
    evaluated, unshifted = objective.stats(model, batch), plain.stats(model, batch)
    assert all(torch.equal(evaluated[k], unshifted[k]) for k in unshifted)  # evaluation never shifts


def _straight_resumed_plain(base_model, data_json, tmp_path, option, steps, stop_at):
    """Weights of a run with `option` straight to `steps`, the same stopped at `stop_at` and resumed, and a
    run without the option; the card of the first and the last."""
    extra = [option, "--generate-test", "false", "--save-every", str(stop_at)]
    assert main(_args(base_model, data_json, tmp_path / "straight", *extra, "--max-steps", str(steps))) == 0
    assert (
        main(_args(base_model, data_json, tmp_path / "plain", "--generate-test", "false", "--max-steps", str(steps)))
        == 0
    )
    assert main(_args(base_model, data_json, tmp_path / "resumed", *extra, "--max-steps", str(stop_at))) == 0
    assert (
        main(["finetune-instruct", "--out", str(tmp_path / "resumed"), "--resume", "auto", "--max-steps", str(steps)])
        == 0
    )
    weights = [load_file(tmp_path / n / "final" / "model.safetensors") for n in ("straight", "resumed", "plain")]
    cards = [(tmp_path / n / "final" / "README.md").read_text() for n in ("straight", "plain")]
    return weights, cards


def test_position_shift_run_resumes_to_the_same_weights(base_model, data_json, tmp_path):
    (straight, resumed, plain), (card, plain_card) = _straight_resumed_plain(
        base_model, data_json, tmp_path, "--position-shift", steps=6, stop_at=3
    )
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not all(torch.equal(straight[k], plain[k]) for k in straight)
    assert json.loads((tmp_path / "straight" / "data_provenance.json").read_text())["position_shift"] is True
    assert "| position shift | yes (random offsets in training) |" in card
    assert "| position shift | no |" in plain_card


def test_length_grouped_run_resumes_across_an_epoch_to_the_same_weights(base_model, data_json, tmp_path):
    # 102 training records in batches of 8: 12 steps an epoch; the resumed run restarts mid-epoch at step 7
    (straight, resumed, plain), (card, plain_card) = _straight_resumed_plain(
        base_model, data_json, tmp_path, "--group-by-length", steps=15, stop_at=7
    )
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    assert not all(torch.equal(straight[k], plain[k]) for k in straight)  # other batches than a plain shuffle
    assert "group_by_length: true" in (tmp_path / "straight" / "config.yaml").read_text()
    assert "| global batch | 8 (grouped by length, shuffled) |" in card
    assert "| global batch | 8 (shuffled) |" in plain_card
