"""End-to-end pretraining: pinned first losses, outputs, kill-and-resume, two processes, bad input."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.options import resolve_config
from hf_scratchgpt.tokenization import train_bpe_tokenizer
from hf_scratchgpt.training.pretrain import CausalLMTask, PretrainConfig, pretrain
from hf_scratchgpt.training.tracking import read_metrics

from ..card_checks import check_card
from ..conftest import REPO, SHARED_DATA

VERDICT = str(SHARED_DATA / "the-verdict.txt")
TINY = [
    "--data",
    VERDICT,
    "--vocab-size",
    "300",
    "--preset",
    "tiny",
    "--context-length",
    "32",
    "--batch-size",
    "8",
    "--warmup-steps",
    "2",
    "--seed",
    "0",
    "--sample-tokens",
    "5",
    "--lr",  # the pinned numbers below are of the defaults before the main job's were measured
    "1e-3",
    "--drop-rate",
    "0.1",
    "--eval-batches",
    "null",
]


def _cfg(tmp_path, *extra):
    return resolve_config(PretrainConfig, [*TINY, "--out", str(tmp_path / "run"), *extra])


def _evals(out):
    return [r for r in read_metrics(out / "metrics.jsonl") if "val_loss" in r]


def test_tiny_run_pinned_losses_and_outputs(tmp_path, capsys):
    cfg = _cfg(tmp_path, "--max-steps", "8", "--eval-every", "4", "--save-every", "4", "--keep-last", "1")
    final = pretrain(cfg)
    out = tmp_path / "run"
    evals = _evals(out)
    assert [r["step"] for r in evals] == [4, 8]
    # pinned: first evaluations of this exact configuration (torch 2.13 CPU); any change to the model,
    # data pipeline, initialisation or loop that changes the numbers shows up here
    assert evals[0]["train_loss"] == pytest.approx(5.21527, abs=1e-4)
    assert evals[0]["val_loss"] == pytest.approx(5.23299, abs=1e-4)
    assert evals[1]["train_loss"] == pytest.approx(5.02998, abs=1e-4)
    assert evals[1]["val_loss"] == pytest.approx(5.04576, abs=1e-4)
    assert evals[1]["val_perplexity"] == pytest.approx(torch.tensor(evals[1]["val_loss"]).exp().item(), rel=1e-6)
    assert evals[1]["tokens_seen"] == 8 * 8 * 32 and evals[1]["ranks_batches"] == [8]
    printed = capsys.readouterr().out
    assert "effective configuration:" in printed and "val_loss" in printed and "sample:" in printed
    # outputs: a normal HF folder, the effective config, metrics, plot, only the last checkpoint
    assert {
        "config.json",
        "model.safetensors",
        "generation_config.json",
        "tokenizer.json",
        "README.md",
        "modeling_scratchgpt.py",
    } <= set(os.listdir(final))
    model = AutoModelForCausalLM.from_pretrained(final)
    tok = AutoTokenizer.from_pretrained(final)
    assert model.config.vocab_size == len(tok) == 300 and model.config.context_length == 32
    card = (final / "README.md").read_text()
    assert "scratchgpt pretrain" in card and f"{evals[1]['val_loss']:.4f}" in card
    metrics = {"loss", "perplexity", "bits_per_byte"}
    check_card(final, pipeline_tag="text-generation", datasets=["the-verdict.txt"], metrics=metrics)
    # bits per byte: the same summed loss over the bytes the targets stand for (this 300-token BPE: 1.47 bytes
    # per token; every token is at least one byte)
    ratio = evals[1]["val_bits_per_byte"] * math.log(2) / evals[1]["val_loss"]  # = targets / bytes
    assert 1 / 2 < ratio < 1
    assert f"{evals[1]['train_bits_per_byte']:.4f} / {evals[1]['val_bits_per_byte']:.4f}" in card
    assert "| training time | 0 min" in card and "| hardware | CPU" in card and (final / "loss.png").is_file()
    assert (out / "config.yaml").is_file() and (out / "loss.png").stat().st_size > 1000
    assert sorted(os.listdir(out / "checkpoints")) == ["step-000008"]
    ckpt = out / "checkpoints" / "step-000008"
    assert json.loads((ckpt / "trainer_state.json").read_text())["step"] == 8
    assert (ckpt / "accelerate" / "optimizer.bin").is_file() and (ckpt / "model.safetensors").is_file()


def _run_cli(args, env_extra=None, **kwargs):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env_extra or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "hf_scratchgpt", "pretrain", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def test_sigkill_and_resume_ends_with_the_same_weights(tmp_path):
    steps = ["--max-steps", "300", "--eval-every", "1000", "--save-every", "10", "--keep-last", "3"]
    killed = tmp_path / "killed"
    proc = _run_cli([*TINY, *steps, "--out", str(killed)])
    target = killed / "checkpoints" / "step-000040" / "trainer_state.json"
    deadline = time.time() + 240
    while not target.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "final").exists()
    resumed = _run_cli([*TINY, *steps, "--out", str(killed), "--resume", "auto"])
    log, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log[-3000:]
    assert "resuming from" in log
    pretrain(_cfg(tmp_path, *steps[:2], "--eval-every", "1000", "--save-every", "100"))  # uninterrupted
    a = load_file(killed / "final" / "model.safetensors")
    b = load_file(tmp_path / "run" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    # no dropout: each process draws its own masks, which a single process cannot reproduce
    common = [*TINY, "--max-steps", "6", "--eval-every", "3", "--save-every", "3", "--drop-rate", "0"]
    one = _run_cli([*common, "--batch-size", "8", "--out", str(tmp_path / "one")])
    log1, _ = one.communicate(timeout=600)
    assert one.returncode == 0, log1[-3000:]
    accelerate = shutil.which("accelerate") or str(REPO / ".venv" / "bin" / "accelerate")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    two = subprocess.run(
        [
            accelerate,
            "launch",
            "--config_file",
            str(REPO / "recipes/accelerate/cpu-2proc.yaml"),
            "--main_process_port",
            "29571",
            "-m",
            "hf_scratchgpt",
            "pretrain",
            *common,
            "--batch-size",
            "4",
            "--out",
            str(tmp_path / "two"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    e1, e2 = _evals(tmp_path / "one"), _evals(tmp_path / "two")
    assert [r["step"] for r in e1] == [r["step"] for r in e2] == [3, 6]
    assert [r["ranks_batches"] for r in e2] == [[3, 3], [6, 6]]  # both ranks took part
    assert e2[-1]["tokens_seen"] == e1[-1]["tokens_seen"] == 6 * 8 * 32
    for r1, r2 in zip(e1, e2):
        assert r2["lr"] == pytest.approx(r1["lr"], rel=1e-9)  # the scheduler steps once per optimizer step
        for key in ("train_loss", "val_loss", "train_running_loss"):
            assert r2[key] == pytest.approx(r1[key], abs=2e-4), (r1["step"], key)
    assert "2 process(es)" in two.stdout + two.stderr


@pytest.mark.parametrize(
    "extra, error, message",
    [
        (["--data", "/nonexistent/corpus.txt"], FileNotFoundError, "data source not found"),
        (["--data", "EMPTY"], ValueError, "file is empty"),
        (["--data", "SHORT"], ValueError, "too short: it has"),
        (["--tokenizer", "GPT2", "--vocab-size", "300"], ValueError, "has 50,257 tokens but vocab_size is 300"),
        (["--out", "UNDER_A_FILE"], NotADirectoryError, "is not a folder"),
        (["--out", "/proc/scratchgpt-run"], PermissionError, "is not writable"),
        (["--resume", "NOCKPT"], FileNotFoundError, "is not a complete checkpoint"),
        (["--log-with", "neptune"], ValueError, "unknown tracker 'neptune'"),
        (["--group-by-length"], ValueError, "the rows `scratchgpt pretrain` trains on all have one length"),
    ],
)
def test_bad_input_fails_before_training(tmp_path, extra, error, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("Too short to make a single window of 32 tokens.")
    (tmp_path / "file.txt").write_text("x")
    subst = {
        "EMPTY": str(tmp_path / "empty.txt"),
        "SHORT": str(tmp_path / "short.txt"),
        "GPT2": str(SHARED_DATA / "gpt2"),
        "UNDER_A_FILE": str(tmp_path / "file.txt" / "run"),
        "NOCKPT": str(tmp_path / "nothing"),
    }
    cfg = _cfg(tmp_path, *[subst.get(x, x) for x in extra])
    with pytest.raises(error, match=message):
        pretrain(cfg)
    out = cfg.out_dir
    if extra[0] == "--out":  # a path that cannot be a folder: nothing was made anywhere
        assert not out.exists()
    else:  # validated before anything is written: no folder, no staging folder, nothing to block a re-run
        assert sorted(os.listdir(tmp_path)) == ["empty.txt", "file.txt", "short.txt"]


def test_existing_output_needs_overwrite_or_resume(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "something").write_text("x")
    with pytest.raises(FileExistsError, match="already exists and is not empty"):
        pretrain(_cfg(tmp_path))
    from hf_scratchgpt.cli import main

    assert main(["pretrain", *TINY, "--out", str(tmp_path / "run")]) == 2
    assert main(["pretrain", "--lr", "abc"]) == 2


def test_tensorboard_tracker_when_asked(tmp_path):
    pytest.importorskip("tensorboard")  # installed by the [test] extra, so CI runs this
    pretrain(_cfg(tmp_path, "--max-steps", "2", "--eval-every", "2", "--save-every", "2", "--log-with", "tensorboard"))
    events = list((tmp_path / "run" / "logs").rglob("events.out.tfevents*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "val_loss" in acc.Tags()["scalars"]


def test_book_mode_is_the_books_loop_draw_for_draw(tmp_path):
    """`--book-mode` equals the book's chapter-5 code (`hf_scratchgpt.book`): same losses, same weights."""
    from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
    from hf_scratchgpt.book.ch02 import create_dataloader_v1
    from hf_scratchgpt.book.ch05 import train_model_simple

    book = ["--book-mode", "true", "--epochs", "2", "--max-steps", "null", "--eval-every", "4"]
    book += ["--eval-batches", "2", "--lr-schedule", "constant", "--warmup-steps", "0", "--clip-grad", "null"]
    book += ["--drop-rate", "0.1", "--save-every", "null", "--batch-size", "16"]
    final = pretrain(_cfg(tmp_path, *book))
    evals = _evals(tmp_path / "run")

    # the book's train_model_simple with the run's tokenizer and settings: torch.manual_seed before the
    # model, loaders drawing from the global RNG, AdamW on all parameters, evaluation after global
    # steps 0, 4, 8, ... on the first 2 batches of both loaders
    tok = AutoTokenizer.from_pretrained(final)
    text = open(VERDICT, encoding="utf-8").read()
    split = int(0.9 * len(text))
    train_loader = create_dataloader_v1(text[:split], 16, 32, 32, shuffle=True, drop_last=True, tokenizer=tok)
    val_loader = create_dataloader_v1(text[split:], 16, 32, 32, shuffle=False, drop_last=False, tokenizer=tok)
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(ScratchGPTConfig.from_pretrained(final))
    model.set_attn_implementation("sdpa")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95))
    train_losses, val_losses, _ = train_model_simple(
        model, train_loader, val_loader, optimizer, "cpu", num_epochs=2, eval_freq=4, eval_iter=2,
        start_context="Every effort moves you", tokenizer=tok,
    )  # fmt: skip
    book_evals = [(4 * i + 1, train, val) for i, (train, val) in enumerate(zip(train_losses, val_losses))]
    ours = [(r["step"], r["train_loss"], r["val_loss"]) for r in evals[: len(book_evals)]]
    assert [r[0] for r in ours] == [r[0] for r in book_evals] and len(book_evals) >= 4
    for a, b in zip(ours, book_evals):
        assert a[1:] == pytest.approx(b[1:], rel=1e-5), (a, b)
    trained = load_file(final / "model.safetensors")
    for name, value in model.state_dict().items():
        assert torch.equal(trained[name], value), name


def test_book_mode_refuses_resume(tmp_path):
    with pytest.raises(ValueError, match="book_mode cannot resume"):
        _cfg(tmp_path, "--book-mode", "true", "--resume", "auto")


def test_verdict_recipe_prints_the_books_first_numbers(tmp_path):
    """The book's chapter-5 run (124M config) for its first evaluations: 9.781 / 9.933 and 8.111 / 8.339."""
    cfg = resolve_config(
        PretrainConfig,
        ["--config", str(REPO / "recipes/pretrain/verdict-book.yaml"), "--data", VERDICT],
    )
    cfg.tokenizer, cfg.max_steps, cfg.out = str(SHARED_DATA / "gpt2"), 6, str(tmp_path / "run")
    pretrain(cfg)
    evals = [(r["step"], round(r["train_loss"], 3), round(r["val_loss"], 3)) for r in _evals(tmp_path / "run")]
    assert evals[:2] == [(1, 9.781, 9.933), (6, 8.111, 8.339)]


def test_gradient_checkpointing_option_trains_the_same_weights(tmp_path):
    weights = {}
    for flag in ("false", "true"):
        cfg = resolve_config(
            PretrainConfig,
            [*TINY, "--max-steps", "3", "--eval-every", "3", "--eval-batches", "1", "--out", str(tmp_path / flag),
             "--gradient-checkpointing", flag],
        )  # fmt: skip
        weights[flag] = load_file(pretrain(cfg) / "model.safetensors")
    assert weights["true"].keys() == weights["false"].keys()
    for name, tensor in weights["true"].items():
        torch.testing.assert_close(tensor, weights["false"][name], rtol=0, atol=1e-6, msg=name)


def test_train_only_sources_add_training_windows_and_leave_validation_alone(tmp_path):
    """`train:SOURCE` text only trains: the validation windows are those of the split sources alone."""
    extra = tmp_path / "extra.txt"
    extra.write_text(" ".join(f"word{i % 97} follows" for i in range(3000)))
    runs = {}
    for name, data in (("plain", [VERDICT]), ("more", [VERDICT, f"train:{extra}"])):
        cfg = resolve_config(
            PretrainConfig,
            [*TINY, "--data", *data, "--tokenizer", str(SHARED_DATA / "gpt2"), "--vocab-size", "50257",
             "--max-steps", "1", "--eval-every", "1", "--out", str(tmp_path / name)],
        )  # fmt: skip
        assert cfg.split_sources == [VERDICT] and cfg.train_only_sources == [str(extra)] * (name == "more")
        pretrain(cfg)
        runs[name] = json.loads((tmp_path / name / "data_provenance.json").read_text())
    plain, more = runs["plain"], runs["more"]
    assert more["validation_sha256"] == plain["validation_sha256"]
    assert more["validation_windows"] == plain["validation_windows"]
    assert (
        more["train_windows"] == plain["train_windows"] + more["train_only"]["train_windows"] > plain["train_windows"]
    )
    assert more["train_only"]["sources"] == [str(extra)] and more["train_sha256"] != plain["train_sha256"]
    card = ModelCard.load(tmp_path / "more" / "final" / "README.md").data
    assert card.datasets == ["the-verdict.txt", "extra.txt"]  # both trained it; only the split one validates
    assert {r.dataset_name for r in card.eval_results} == {"the-verdict.txt"}


def test_train_only_sources_alone_are_refused(tmp_path):
    with pytest.raises(ValueError, match="at least one corpus source that is split"):
        _cfg(tmp_path, "--data", f"train:{VERDICT}").validate()


def test_drawn_sample_is_repeatable_and_leaves_the_training_rng_alone(tmp_path):
    cfg = _cfg(tmp_path, "--sample-temperature", "1.0", "--sample-top-k", "20", "--sample-tokens", "12")
    task = CausalLMTask(cfg)
    task.tokenizer = train_bpe_tokenizer([VERDICT], vocab_size=300)
    model = ScratchGPTForCausalLM(ScratchGPTConfig(vocab_size=len(task.tokenizer), context_length=32, emb_dim=32,
                                                   n_heads=2, n_layers=1))  # fmt: skip
    torch.manual_seed(5)
    state = torch.random.get_rng_state()
    first = task.sample(model)
    assert torch.equal(torch.random.get_rng_state(), state)  # the training's dropout draws are not moved
    assert task.sample(model) == first
    greedy = CausalLMTask(_cfg(tmp_path, "--sample-tokens", "12", "--sample-temperature", "0"))
    greedy.tokenizer = task.tokenizer
    assert greedy.sample(model) != first  # a random untrained model: drawing differs from greedy
    with pytest.raises(ValueError, match="sample_temperature must be >= 0"):
        _cfg(tmp_path, "--sample-temperature", "-1").validate()


def test_a_run_with_relative_paths_resumes_from_another_folder(tmp_path, monkeypatch):
    start, elsewhere = tmp_path / "start", tmp_path / "elsewhere"
    start.mkdir(), elsewhere.mkdir()
    (start / "corpus.txt").write_text((SHARED_DATA / "the-verdict.txt").read_text(encoding="utf-8"))
    monkeypatch.chdir(start)
    relative = [*TINY[2:], "--data", "builtin", "train:corpus.txt", "--out", "run", "--eval-every", "2"]
    pretrain(resolve_config(PretrainConfig, [*relative, "--max-steps", "2", "--save-every", "2"]))
    saved = yaml.safe_load((start / "run" / "config.yaml").read_text())
    assert saved["data"] == ["builtin", f"train:{start / 'corpus.txt'}"]  # a local path is kept absolute
    monkeypatch.chdir(elsewhere)  # where corpus.txt is no file
    cfg = resolve_config(PretrainConfig, ["--out", str(start / "run"), "--resume", "auto", "--max-steps", "4"])
    assert cfg.data == saved["data"]
    pretrain(cfg)
    assert [r["step"] for r in _evals(start / "run")] == [2, 4]
    monkeypatch.chdir(start)  # the first command again, relative paths and all, continues the same run
    again = resolve_config(PretrainConfig, [*relative, "--resume", "auto", "--max-steps", "6"])
    assert again.data == saved["data"]
