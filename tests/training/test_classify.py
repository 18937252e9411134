"""Classification fine-tuning end to end through the CLI: train, save, reload, classify, pipeline, LoRA, bad input."""

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
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2LMHeadModel, pipeline

from hf_scratchgpt import ScratchGPTForCausalLM, ScratchGPTForSequenceClassification
from hf_scratchgpt.cli import main
from hf_scratchgpt.folders import write_model_folder
from hf_scratchgpt.options import resolve_config
from hf_scratchgpt.tokenization import load_tokenizer, train_bpe_tokenizer
from hf_scratchgpt.training.classify import ClassifierConfig
from hf_scratchgpt.training.finetune import apply_train_mode
from hf_scratchgpt.training.tracking import read_metrics

from ..card_checks import check_card
from ..conftest import tiny_config

GOOD = ["great", "lovely", "superb", "happy", "wonderful", "fine", "bright", "sunny"]
BAD = ["awful", "broken", "sad", "terrible", "gloomy", "rotten", "grim", "dull"]
FILLER = ["the", "day", "was", "and", "my", "dog", "felt", "very", "today", "it"]


def _texts(n, seed=0):
    """Texts whose label is which word list they draw from (an easy, exactly known task)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        words = GOOD if i % 2 == 0 else BAD
        picks = [FILLER[j] for j in torch.randint(len(FILLER), (4,), generator=g)]
        picks += [words[j] for j in torch.randint(len(words), (2,), generator=g)]
        order = torch.randperm(len(picks), generator=g).tolist()
        rows.append((" ".join(picks[k] for k in order), "pos" if i % 2 == 0 else "neg"))
    return rows


@pytest.fixture(scope="module")
def base_model(tmp_path_factory):
    """A tiny ScratchGPT causal-LM folder with its own BPE tokenizer (what `pretrain` writes)."""
    root = tmp_path_factory.mktemp("base")
    tok = train_bpe_tokenizer([t for t, _ in _texts(200, seed=9)], vocab_size=300, model_max_length=32)
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    card = {"weights": "random", "provenance": "a test fixture"}
    write_model_folder(root / "final", ScratchGPTForCausalLM(config), tok, command="test", card_fields=card)
    return root / "final"


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    lines = ["review,sentiment"] + [f"{t},{label}" for t, label in _texts(200)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _args(base_model, data_csv, out, *extra):
    return [
        "finetune-classifier", "--model", str(base_model), "--data", str(data_csv), "--text-column", "review",
        "--label-column", "sentiment", "--labels", "neg", "pos", "--out", str(out), "--seed", "0",
        "--batch-size", "16", "--eval-every", "10", "--eval-batches", "2", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(base_model, data_csv, tmp_path_factory):
    """A run in `all` mode (the tiny model learns the task in a few dozen steps)."""
    out = tmp_path_factory.mktemp("runs") / "clf"
    args = _args(base_model, data_csv, out, "--train-mode", "all", "--lr", "3e-3", "--max-steps", "40")
    assert main(args) == 0
    return out


def test_run_writes_a_classifier_folder_with_results_plot_and_card(trained):
    final = trained / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["ScratchGPTForSequenceClassification"]
    assert config["id2label"] == {"0": "neg", "1": "pos"} and config["label2id"] == {"neg": 0, "pos": 1}
    assert config["auto_map"]["AutoModelForSequenceClassification"].endswith("ScratchGPTForSequenceClassification")
    results = json.loads((final / "eval_results.json").read_text())
    assert results["labels"] == ["neg", "pos"]
    assert [results[s]["examples"] for s in ("train", "val", "test")] == [140, 20, 40]  # 70/10/20 of 200
    for split in ("train", "val", "test"):
        matrix = results[split]["confusion_matrix"]
        assert sum(map(sum, matrix)) == results[split]["examples"]
        assert results[split]["accuracy"] == pytest.approx((matrix[0][0] + matrix[1][1]) / results[split]["examples"])
    assert results["test"]["accuracy"] >= 0.9  # the words decide the label: a working classifier gets them right
    evals = [r for r in read_metrics(trained / "metrics.jsonl") if "val_accuracy" in r]
    assert [r["step"] for r in evals] == [10, 20, 30, 40] and {"train_f1", "val_loss"} <= evals[-1].keys()
    assert (trained / "loss.png").stat().st_size > 1000
    card = (final / "README.md").read_text()
    assert "pipeline_tag: text-classification" in card and "{" not in card.replace("{%", "")
    assert f"{100 * results['test']['accuracy']:.2f} %" in card
    check_card(final, pipeline_tag="text-classification", datasets=["reviews.csv"], metrics={"accuracy", "f1"})
    assert "![losses](loss.png)" in card and (final / "loss.png").stat().st_size > 1000
    provenance = json.loads((trained / "data_provenance.json").read_text())
    assert sum(provenance["train_class_counts"]) == 140 and len(provenance["train_sha256"]) == 64


def test_classify_cli_text_file_and_jsonl(trained, tmp_path, capsys):
    final = trained / "final"
    texts = [t for t, _ in _texts(6, seed=3)]
    (tmp_path / "texts.txt").write_text("\n".join(texts[3:]) + "\n\n", encoding="utf-8")
    assert main(["classify", str(final), *texts[:3], "--file", str(tmp_path / "texts.txt"), "--jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == texts
    model = ScratchGPTForSequenceClassification.from_pretrained(final).eval()
    tok = load_tokenizer(final)
    for r in records:
        probs = model(**tok(r["text"], return_tensors="pt")).logits.softmax(-1)[0]
        assert r["probabilities"]["pos"] == pytest.approx(probs[1].item(), abs=1e-5)
        assert r["label"] == ("pos" if probs[1] > probs[0] else "neg")
    assert main(["classify", str(final), texts[0]]) == 0
    line = capsys.readouterr().out.strip()
    assert line.split("\t")[0] == records[0]["label"] and texts[0] in line


def test_classify_bad_input_is_one_line(trained, base_model, tmp_path, capsys):
    final = trained / "final"
    for argv, message in [
        ([str(base_model), "hello"], "holds a ScratchGPTForCausalLM, not a classifier"),
        ([str(final)], "nothing to classify: give texts after MODEL_DIR or --file FILE"),
        ([str(final), "--file", str(tmp_path / "none.txt")], "no such file"),
        ([str(tmp_path), "hello"], "is not a model folder (no config.json in it)"),
    ]:
        assert main(["classify", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


FRESH = textwrap.dedent(
    """
    import json, sys
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline
    sys.modules["hf_scratchgpt"] = None  # the package is unimportable here: only the folder's own code can run
    folder, texts = sys.argv[1], json.loads(sys.argv[2])
    model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)  # without: a prompt (issue 13)
    with torch.no_grad():
        logits = [model(**tok(t, return_tensors="pt")).logits[0].tolist() for t in texts]
    clf = pipeline("text-classification", model=folder, trust_remote_code=True)
    print(json.dumps({"module": type(model).__module__, "logits": logits, "pipeline": clf(texts)}))
    """
)


def test_saved_folder_loads_fresh_without_the_package_and_in_a_pipeline(trained, tmp_path):
    final = trained / "final"
    texts = [t for t, _ in _texts(4, seed=5)]
    (tmp_path / "fresh.py").write_text(FRESH)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "fresh.py"), str(final), json.dumps(texts)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["module"].startswith("transformers_modules.")
    in_process = pipeline("text-classification", model=str(final))  # the package is installed here: no remote code
    model = ScratchGPTForSequenceClassification.from_pretrained(final).eval()
    tok = load_tokenizer(final)
    for text, logits, got, ours in zip(texts, fresh["logits"], fresh["pipeline"], in_process(texts)):
        expected = model(**tok(text, return_tensors="pt")).logits[0]
        assert torch.allclose(torch.tensor(logits), expected, atol=1e-5)
        assert got["label"] == ours["label"] == model.config.id2label[int(expected.argmax())]
        assert got["score"] == pytest.approx(ours["score"], abs=1e-5)


def test_train_modes_make_the_books_parameters_trainable(base_model):
    def trainable(mode, **extra):
        cfg = ClassifierConfig(model=str(base_model), data="x", train_mode=mode, **extra)
        model = ScratchGPTForSequenceClassification.from_pretrained(base_model, num_labels=2)
        apply_train_mode(model, cfg, ("score",))
        return {n for n, p in model.named_parameters() if p.requires_grad}

    last = trainable("last-block")
    assert {n.split(".")[0] for n in last} == {"transformer", "score"}
    assert all(n.startswith(("transformer.trf_blocks.1.", "transformer.final_norm.", "score.")) for n in last)
    assert "transformer.trf_blocks.1.att.W_query.weight" in last and "transformer.final_norm.scale" in last
    assert trainable("head") == {"score.weight", "score.bias"}
    assert len(trainable("all")) == len(
        list(ScratchGPTForSequenceClassification.from_pretrained(base_model).parameters())
    )
    lora = trainable("lora", rank=4, alpha=8)
    assert {"score.weight", "score.bias"} <= lora
    assert all(n.endswith((".lora.A", ".lora.B")) for n in lora - {"score.weight", "score.bias"})
    assert len(lora) == 2 + 2 * 6 * 2  # 6 linear layers per block (q, k, v, out, 2 feed-forward), 2 blocks
    only_q = trainable("lora", rank=4, alpha=8, target_modules=["W_query"])
    assert len(only_q) == 2 + 2 * 2


def test_lora_run_writes_a_merged_model_and_a_peft_adapter(base_model, data_csv, tmp_path):
    out = tmp_path / "lora"
    extra = ["--train-mode", "lora", "--rank", "4", "--alpha", "8", "--lr", "3e-3", "--max-steps", "12",
             "--early-stopping-patience", "5", "--early-stopping-metric", "val_loss"]  # fmt: skip
    assert main(_args(base_model, data_csv, out, *extra)) == 0
    final, adapter = out / "final", out / "final" / "adapter"
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base_model.resolve())
    assert config["task_type"] == "SEQ_CLS" and config["modules_to_save"] == ["score"] and config["r"] == 4
    assert not any(".lora." in k for k in load_file(final / "model.safetensors"))  # merged: plain layers
    check_card(adapter, pipeline_tag="text-classification", library_name="peft", datasets=["reviews.csv"])
    assert f'PeftModel.from_pretrained(base, "{adapter}")' in (adapter / "README.md").read_text()
    merged = AutoModelForSequenceClassification.from_pretrained(final).eval()
    base = AutoModelForSequenceClassification.from_pretrained(
        config["base_model_name_or_path"], num_labels=2, id2label=merged.config.id2label
    )
    with_adapter = PeftModel.from_pretrained(base, adapter).eval()
    ids = torch.randint(0, merged.config.vocab_size, (3, 12))
    assert torch.allclose(with_adapter(input_ids=ids).logits, merged(input_ids=ids).logits, atol=1e-5)
    # early stopping kept the best weights: final/ is best/
    assert (
        load_file(adapter / "adapter_model.safetensors").keys()
        == load_file(out / "best/adapter/adapter_model.safetensors").keys()
    )
    for key, value in load_file(out / "best" / "model.safetensors").items():
        assert torch.equal(value, load_file(final / "model.safetensors")[key])


@pytest.mark.parametrize(
    "rows, extra, message",
    [
        (
            [("good day", "pos"), ("bad day", "meh")],
            [],
            r"record 1: label 'meh' is not in the label set",
        ),
        ([("good day", "pos"), ("  ", "neg")], [], "record 1: empty text"),
        ([("good day", "pos"), ("fine day", "pos")], ["--labels", "pos"], "holds one class only \\('pos'\\)"),
        (
            [("good day", "pos")],
            ["--text-column", "body"],
            r"no column 'body'; the columns are \['review', 'sentiment",
        ),
    ],
)
def test_bad_data_is_one_line_and_writes_nothing(base_model, tmp_path, capsys, rows, extra, message):
    path = tmp_path / "bad.csv"
    path.write_text("review,sentiment\n" + "".join(f"{t},{label}\n" for t, label in rows), encoding="utf-8")
    assert main(_args(base_model, path, tmp_path / "out", *extra)) == 2  # a later --labels replaces the first
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("scratchgpt finetune-classifier: error:")
    assert re.search(message, err), err
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())


def test_not_a_scratchgpt_model_and_long_texts(base_model, data_csv, tmp_path, capsys):
    gpt2 = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, n_positions=16)).save_pretrained(gpt2)
    assert main(_args(gpt2, data_csv, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "not a ScratchGPT model (its config.json has model_type 'gpt2'); convert it first" in err
    assert not (tmp_path / "out").exists()
    # texts longer than --max-length keep their first tokens; the run says how many were cut
    cfg = resolve_config(ClassifierConfig, _args(base_model, data_csv, tmp_path / "short", "--max-length", "3")[1:])
    assert cfg.max_length == 3
    assert main(_args(base_model, data_csv, tmp_path / "short", "--max-length", "3", "--max-steps", "1")) == 0
    out = capsys.readouterr().out
    assert "texts longer than 3 tokens keep their first 3 tokens: 140 train, 20 validation, 40 test" in out
    assert json.loads((tmp_path / "short" / "data_provenance.json").read_text())["max_length"] == 3


def test_split_classifier_data_writes_the_splits_and_a_held_in_corpus(base_model, data_csv, tmp_path, capsys):
    out = tmp_path / "splits"
    args = ["--data", str(data_csv), "--text-column", "review", "--label-column", "sentiment", "--balance"]
    assert main(["split-classifier-data", *args, "--out", str(out)]) == 0
    rows = {
        n: [json.loads(x) for x in (out / f"{n}.jsonl").read_text().splitlines()]
        for n in ("train", "validation", "test")
    }
    assert [len(v) for v in rows.values()] == [140, 20, 40]
    record = json.loads((out / "splits.json").read_text())
    assert record["labels"] == ["neg", "pos"] and record["examples"] == {"train": 140, "validation": 20, "test": 40}
    corpus = (out / "pretrain.txt").read_text().splitlines()
    held_out = {r["text"] for n in ("validation", "test") for r in rows[n]}
    assert corpus and not held_out & set(corpus)  # no held-out text is ever pretrained on
    assert set(corpus) <= {r["text"] for r in rows["train"]}  # balanced 100/100 already: nothing left out
    assert len(corpus) == 140 - record["pretrain_texts_dropped_as_held_out_duplicates"]
    # the same split as finetune-classifier draws from the table itself
    cfg = resolve_config(ClassifierConfig, ["--model", str(base_model), "--data", str(data_csv), *args[2:]])
    splits, _ = cfg.load_splits()
    assert list(splits["test"]["text"]) == [r["text"] for r in rows["test"]]
    # a folder of splits trains as it is; the saved tokenizer ends every text with the end token
    run = tmp_path / "run"
    assert (
        main(
            [
                "finetune-classifier",
                "--model",
                str(base_model),
                "--data",
                str(out),
                "--out",
                str(run),
                "--max-steps",
                "2",
            ]
        )
        == 0
    )
    assert json.loads((run / "data_provenance.json").read_text())["test_examples"] == 40
    tok = load_tokenizer(run / "final")
    assert (
        tok("great day")["input_ids"][-1]
        == tok.eos_token_id
        != tok("great day", add_special_tokens=False)["input_ids"][-1]
    )
    assert main(["split-classifier-data", *args, "--out", str(out)]) == 2  # exists: refused, nothing lost
    assert "already exists" in capsys.readouterr().err and (out / "train.jsonl").is_file()
