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
from hf_scratchgpt.cli import VERBS, find_verb, main
from hf_scratchgpt.options import UsageError, build_parser, config_class, function_options, parse_args


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


ALL_VERBS = [verb for verbs in VERBS.values() for verb in verbs]


@pytest.mark.parametrize("verb", ALL_VERBS)
def test_every_verb_has_help(verb, capsys):
    assert main([verb, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: scratchgpt {verb}") and "--" in out
    if config_class(find_verb(verb)) is not None:  # training verbs take a recipe
        assert "--config RECIPE.yaml" in out


def test_top_level_help_lists_verbs_by_family(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for family, verbs in VERBS.items():
        if verbs:
            assert f"{family}:" in out and all(v in out for v in verbs)
    assert main([]) == 2


def test_version(capsys):
    import hf_scratchgpt

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"scratchgpt (hf-scratchgpt) {hf_scratchgpt.__version__}\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "DIR", "--prompt", "x", "--top-k", "many"], "--top-k: expected int, got 'many'"),
        (["generate", "DIR"], "the following arguments are required: --prompt"),
        (["init-model", "--out", "x", "--seed"], "--seed needs a value"),
        (["init-model", "--out", "x", "--colour", "red"], "unknown option --colour; valid options: --context-length"),
        (["init-model", "--out", "x", "--presett", "tiny"], "unknown option --presett (did you mean --preset?); valid"),
        (["train-tokenizer", "--files", "a.txt", "--vocab-size", "300", "--out", "o", "--overwrite", "maybe"],
         "--overwrite: expected true or false, got 'maybe'"),
        (["convert-book", "ckpt.pth", "out", "--preset", "gpt2-small", "extra"], "--preset takes one value, got"),
        (["convert-book", "ckpt.pth", "out", "extra", "--preset", "gpt2-small"], "unexpected argument 'extra'"),
        (["pretrain", "--config", "NOPE.yaml"], "recipe not found: NOPE.yaml"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_with_exit_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and err.startswith(f"scratchgpt {argv[0]}: error: ")


def test_recipe_keys_are_checked_like_options(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.01\nlearning_rate: 3\n")
    assert main(["pretrain", "--config", str(recipe)]) == 2
    assert "unknown key(s) ['learning_rate']; valid keys:" in capsys.readouterr().err
    recipe.write_text("batch_sise: 64\n")
    assert main(["pretrain", "--config", str(recipe)]) == 2
    assert "unknown key(s) ['batch_sise'] (did you mean batch_size?); valid keys:" in capsys.readouterr().err
    recipe.write_text("lr: fast\n")
    assert main(["pretrain", "--config", str(recipe), "--max-steps", "1"]) == 2
    assert "lr: expected float, got 'fast'" in capsys.readouterr().err


def test_other_failures_are_one_line_and_debug_shows_the_traceback(monkeypatch, capsys, model_dir):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("transformers.GenerationMixin.generate", broken)
    assert main(["generate", str(model_dir), "--prompt", "I"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: out of memory (--debug shows where)" in err
    with pytest.raises(RuntimeError, match="out of memory"):
        main(["generate", str(model_dir), "--prompt", "I", "--debug"])


def test_generate_from_an_empty_prompt_starts_at_the_start_token(model_dir, capsys):
    text = commands.generate(str(model_dir), prompt="", max_new_tokens=5)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    expected = model.generate(torch.tensor([[0]]), max_new_tokens=5, do_sample=False, pad_token_id=0)[0, 1:]
    assert text == AutoTokenizer.from_pretrained(model_dir).decode(expected, skip_special_tokens=True)
    assert main(["generate", str(model_dir), "--prompt", "", "--max-new-tokens", "3"]) == 0


def test_a_model_without_tokenizer_says_so(tmp_path, model_dir, capsys):
    assert main(["init-model", "--out", str(tmp_path / "bare"), "--context-length", "64"]) == 0
    assert main(["generate", str(tmp_path / "bare"), "--prompt", "I"]) == 2
    assert "holds no tokenizer" in capsys.readouterr().err
    tok = str(model_dir)  # any tokenizer folder with the right vocabulary size will do
    assert main(["init-model", "--out", str(tmp_path / "m300"), "--tokenizer", tok, "--overwrite"]) == 0
    (tmp_path / "m300" / "tokenizer.json").unlink()
    assert main(["generate", str(tmp_path / "m300"), "--prompt", "I", "--tokenizer", tok, "--max-new-tokens", "2"]) == 0


def test_init_model_takes_gpt2s_own_files(tmp_path, shared_data):
    commands.init_model(out=str(tmp_path / "m"), preset="tiny", tokenizer=str(shared_data / "gpt2"))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["vocab_size"] == 50257 and cfg["eos_token_id"] == 50256
    assert AutoTokenizer.from_pretrained(tmp_path / "m")("Hello, I am")["input_ids"] == [15496, 11, 314, 716]
    tok_config = json.loads((tmp_path / "m" / "tokenizer_config.json").read_text())
    assert tok_config["model_max_length"] == 128  # the model's context length, not GPT-2's 1024


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    def interrupted(**_):
        raise KeyboardInterrupt

    monkeypatch.setitem(VERBS["hub"], "pull", interrupted)
    monkeypatch.setattr("hf_scratchgpt.cli.function_options", lambda fn: [])
    monkeypatch.setattr("hf_scratchgpt.cli.parse_args", lambda *a: (None, {}))
    assert main(["pull"]) == 130
    assert capsys.readouterr().err == "scratchgpt pull: interrupted\n"
