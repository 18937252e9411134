"""CLI verbs: importable functions, `scratchgpt` and `python -m hf_scratchgpt`, clear errors, atomic output."""

import inspect
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_scratchgpt import commands
from hf_scratchgpt.cli import main
from hf_scratchgpt.options import UsageError, build_parser, function_options, parse_args


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    verdict = os.fspath(__import__("tests.conftest", fromlist=["SHARED_DATA"]).SHARED_DATA / "the-verdict.txt")
    assert main(["train-tokenizer", "--files", verdict, "--vocab-size", "300", "--out", str(root / "tok")]) == 0
    assert (
        main(["init-model", "--out", str(root / "model"), "--tokenizer", str(root / "tok"), "--context-length", "64"])
        == 0
    )
    return root / "model"


def test_train_tokenizer_and_init_model_write_hf_folders(model_dir):
    files = set(os.listdir(model_dir))
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "modeling_scratchgpt.py",
    } <= files
    cfg = json.loads((model_dir / "config.json").read_text())
    assert cfg["vocab_size"] == 300 and cfg["context_length"] == 64 and cfg["eos_token_id"] == 0
    card = (model_dir / "README.md").read_text()
    assert "scratchgpt init-model" in card and "ScratchGPTForCausalLM" in card and "{" not in card.split("```")[0]
    assert not [p for p in os.listdir(model_dir.parent) if p.startswith(".")]  # no temp folders left behind


def test_generate_greedy_matches_model_generate(model_dir, capsys):
    text = commands.generate(str(model_dir), prompt="I had always", max_new_tokens=6)
    assert capsys.readouterr().out.strip() == ("I had always" + text).strip()
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    ids = tok("I had always", return_tensors="pt").input_ids
    expected = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)[0, ids.shape[1] :]
    assert text == tok.decode(expected, skip_special_tokens=True)


def test_generate_sampling_is_seeded(model_dir):
    a = commands.generate(str(model_dir), prompt="I", temperature=1.0, top_k=20, top_p=0.95, seed=5)
    b = commands.generate(str(model_dir), prompt="I", temperature=1.0, top_k=20, top_p=0.95, seed=5)
    assert a == b


def test_console_script_and_module_entry_point(model_dir):
    env = dict(os.environ)
    for cmd in ([shutil.which("scratchgpt") or "scratchgpt"], [sys.executable, "-m", "hf_scratchgpt"]):
        proc = subprocess.run(
            cmd + ["generate", str(model_dir), "--prompt", "I had", "--max-new-tokens", "3"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("I had")


def test_parser_is_derived_from_the_signature():
    options = function_options(commands.generate)
    _, given = parse_args("generate", "", options, ["DIR", "--prompt", "x", "--top-k", "5", "--temperature", "0.7"])
    assert given == {"model_dir": "DIR", "prompt": "x", "top_k": 5, "temperature": 0.7}  # the rest: the defaults
    assert {o.name: o.default for o in options if not o.positional} == {
        "prompt": inspect.Parameter.empty,
        "max_new_tokens": 50,
        "temperature": 0.0,
        "top_k": None,
        "top_p": None,
        "num_beams": 1,
        "seed": 123,
        "tokenizer": None,
    }
    with pytest.raises(UsageError, match="required: --prompt"):
        parse_args("generate", "", options, ["DIR"])  # --prompt is required
    help_text = build_parser("generate", "", options, recipe=False).format_help()
    assert "--max-new-tokens" in help_text and "Most tokens to generate." in help_text


def test_errors_are_clear_and_exit_nonzero(tmp_path, capsys, model_dir):
    assert main(["nope"]) == 2
    assert "unknown verb 'nope'" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing"), "--prompt", "x"]) == 2
    assert "model not found" in capsys.readouterr().err
    assert (
        main(
            [
                "train-tokenizer",
                "--files",
                str(tmp_path / "none.txt"),
                "--vocab-size",
                "300",
                "--out",
                str(tmp_path / "t"),
            ]
        )
        == 2
    )
    assert "none.txt" in capsys.readouterr().err and not (tmp_path / "t").exists()
    assert main(["init-model", "--out", str(model_dir), "--preset", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["init-model", "--out", str(tmp_path / "m"), "--preset", "gpt9"]) == 2
    assert "unknown preset 'gpt9'" in capsys.readouterr().err and not (tmp_path / "m").exists()


def test_failed_write_leaves_no_folder(tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("transformers.PreTrainedModel.save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        commands.init_model(out=str(tmp_path / "m"), preset="tiny")
    assert os.listdir(tmp_path) == []


def test_overwrite_replaces_only_when_complete(tmp_path):
    out = tmp_path / "m"
    commands.init_model(out=str(out), preset="tiny", seed=1)
    w1 = load_file(out / "model.safetensors")["transformer.tok_emb.weight"]
    commands.init_model(out=str(out), preset="tiny", seed=2, overwrite=True)
    w2 = load_file(out / "model.safetensors")["transformer.tok_emb.weight"]
    assert not torch.equal(w1, w2)
    assert sorted(os.listdir(tmp_path)) == ["m"]
