"""The shared run's folder, tried as a new user would: resume, overwrite, failed runs, Ctrl-C, early stopping."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from hf_scratchgpt.cli import main
from hf_scratchgpt.options import resolve_config
from hf_scratchgpt.training.checkpoint import complete_checkpoints
from hf_scratchgpt.training.pretrain import PretrainConfig, pretrain
from hf_scratchgpt.training.tracking import read_metrics

from .test_pretrain import TINY, VERDICT


def _cfg(out, *extra):
    return resolve_config(PretrainConfig, [*TINY, "--out", str(out), *extra])


def _steps(out):
    return [r["step"] for r in read_metrics(out / "metrics.jsonl") if "val_loss" in r]


def test_resume_continues_the_saved_run_without_repeating_options(tmp_path, capsys):
    out = tmp_path / "mine"
    pretrain(_cfg(out, "--max-steps", "4", "--eval-every", "2", "--save-every", "2", "--lr", "0.002"))
    # the README's own example: only --out and --resume (and a safe change: more steps)
    cfg = resolve_config(PretrainConfig, ["--out", str(out), "--resume", "auto", "--max-steps", "6"])
    assert cfg.data == [VERDICT] and cfg.vocab_size == 300 and cfg.context_length == 32 and cfg.lr == 0.002
    assert cfg.max_steps == 6
    pretrain(cfg)
    assert "resuming from" in capsys.readouterr().out
    assert _steps(out) == [2, 4, 6]
    assert json.loads((out / "final" / "config.json").read_text())["vocab_size"] == 300
    assert "max_steps: 6" in (out / "config.yaml").read_text()
    assert "| learning rate | 0.002 (cosine" in (out / "final" / "README.md").read_text()  # the peak, not the last
    # resuming a finished run rewrites final/ from the last checkpoint and logs nothing twice
    capsys.readouterr()
    pretrain(resolve_config(PretrainConfig, ["--out", str(out), "--resume", "auto"]))
    assert _steps(out) == [2, 4, 6] and (out / "final" / "model.safetensors").is_file()
    assert "the run already reached step 6 of 6: final/ and the final evaluation are written again" in (
        capsys.readouterr().out
    )
    # a change that would make another run is refused with one line, by the API and the command line
    with pytest.raises(ValueError, match=r"cannot resume .*mine with lr = 0.01: the run was started with 0.002"):
        resolve_config(PretrainConfig, ["--out", str(out), "--resume", "auto", "--lr", "0.01"])
    capsys.readouterr()
    assert main(["pretrain", "--out", str(out), "--resume", "auto", "--data", "builtin"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot resume" in err and "data" in err and "Traceback" not in err


def test_overwrite_replaces_the_old_run(tmp_path):
    out = tmp_path / "run"
    pretrain(_cfg(out, "--max-steps", "6", "--eval-every", "3", "--save-every", "3", "--keep-last", "5"))
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["step-000003", "step-000006"]
    pretrain(_cfg(out, "--max-steps", "2", "--eval-every", "2", "--save-every", "1", "--overwrite"))
    assert [p.name for p in complete_checkpoints(out / "checkpoints")] == ["step-000001", "step-000002"]
    assert _steps(out) == [2]  # no line of the old run's metrics
    configs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert sum(r.get("event") == "config" for r in configs) == 1
    assert not [p for p in os.listdir(tmp_path) if p != "run"]  # no staging or old folder left
    cfg = resolve_config(PretrainConfig, ["--out", str(out), "--resume", "auto"])
    assert cfg.max_steps == 2  # the new run's configuration


def test_a_failed_run_leaves_nothing_and_the_corrected_command_works(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a if a != VERDICT else str(tmp_path / "typo.txt") for a in TINY]
    assert main(["pretrain", *args, "--out", str(out), "--max-steps", "2", "--save-every", "2"]) == 2
    captured = capsys.readouterr()
    assert "data source not found" in captured.err and captured.err.count("\n") == 1
    assert "effective configuration" not in captured.out  # printed only once everything is validated
    assert os.listdir(tmp_path) == []
    assert main(["pretrain", *TINY, "--out", str(out), "--max-steps", "2", "--save-every", "2"]) == 0
    assert (out / "final" / "model.safetensors").is_file()


def test_default_output_folder_follows_the_data(tmp_path):
    assert str(resolve_config(PretrainConfig, []).out_dir) == os.path.join("runs", "tiny-builtin")
    assert str(resolve_config(PretrainConfig, ["--data", VERDICT]).out_dir) == os.path.join("runs", "tiny-the-verdict")
    assert str(resolve_config(PretrainConfig, ["--name", "x"]).out_dir) == os.path.join("runs", "x")


def test_command_line_forms(tmp_path, capsys):
    assert main(["pretrain", "--lr=0.01", "--max-steps", "3", "--help"]) == 0  # --help after other options
    assert "--early-stopping-patience" in capsys.readouterr().out
    cfg = resolve_config(
        PretrainConfig, ["--lr=0.01", "--tie-word-embeddings", "--no-book-mode", "--qkv-bias", "false"]
    )
    assert (cfg.lr, cfg.tie_word_embeddings, cfg.book_mode, cfg.qkv_bias) == (0.01, True, False, False)
    assert main(["pretrain", "--learning-rate", "1"]) == 2
    err = capsys.readouterr().err
    assert "unknown option --learning-rate; valid options:" in err and "--lr" in err and err.count("\n") == 1


def test_ctrl_c_saves_a_checkpoint_and_the_resumed_run_ends_as_an_uninterrupted_one(tmp_path):
    steps = ["--max-steps", "80", "--eval-every", "1000", "--save-every", "10", "--keep-last", "3"]
    out = tmp_path / "interrupted"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "hf_scratchgpt", "pretrain", *TINY, *steps, "--out", str(out)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (out / "checkpoints" / "step-000010").is_dir() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 130, stderr[-3000:]
    assert f"continue with: scratchgpt pretrain --out {out} --resume auto" in stderr
    assert "Traceback" not in stderr and not (out / "final").exists()
    stopped_at = max(int(p.name.split("-")[1]) for p in complete_checkpoints(out / "checkpoints"))
    assert 10 <= stopped_at < 80
    resumed = subprocess.run(
        [sys.executable, "-m", "hf_scratchgpt", "pretrain", "--out", str(out), "--resume", "auto"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at step {stopped_at}" in resumed.stdout
    pretrain(_cfg(tmp_path / "plain", *steps))
    a = load_file(out / "final" / "model.safetensors")
    b = load_file(tmp_path / "plain" / "final" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_early_stopping_keeps_the_best_weights(tmp_path, capsys):
    out = tmp_path / "run"
    # val_loss falls at every evaluation, so with mode "max" the first evaluation stays the best one
    extra = ["--max-steps", "20", "--eval-every", "2", "--save-every", "100", "--early-stopping-patience", "2"]
    pretrain(_cfg(out, *extra, "--early-stopping-mode", "max"))
    assert _steps(out) == [2, 4, 6]  # stopped after two evaluations without improvement
    assert "early stopping at step 6" in capsys.readouterr().out
    best, final = load_file(out / "best" / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    assert all(torch.equal(best[k], final[k]) for k in best)
    last = load_file(out / "checkpoints" / "step-000006" / "model.safetensors")
    assert not all(torch.equal(last[k], final[k]) for k in last)  # the final folder is not the last step
    assert "val_loss" in (out / "best" / "README.md").read_text()
    with pytest.raises(ValueError, match="early_stopping_metric 'val_accuracy' is not logged"):
        pretrain(_cfg(tmp_path / "other", *extra, "--early-stopping-metric", "val_accuracy"))
