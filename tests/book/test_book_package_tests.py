"""The chapter's code runs unchanged: the book package's own tests, with only their import lines changed.

Each test file shipped in `llms_from_scratch/tests/` is copied with `llms_from_scratch.` replaced by
`hf_scratchgpt.book.` in its import lines, and run by pytest in a subprocess. the-verdict is put where
the tests look for it (the cwd, and their `tmp_path`), tiktoken reads GPT-2's files offline (seeded by
conftest), and any download attempt fails the run. test_generate.py is a copy of test_ch02.py in
1.0.19; it runs too.

test_ch06.py and test_appendix_e.py (a spam classifier finetuned on a tiny model, with and without
LoRA) find the unextracted `SMSSpamCollection` in `tmp_path/sms_spam_collection/`, as if its zip had
just been extracted: `download_and_unzip_spam_data` takes its offline path and renames it to the
`SMSSpamCollection.tsv` the tests read.

test_ch05.py and test_appendix_d.py train 124M models (`GPTModel` and `GPTModelFast`, and appendix D's
six epochs, with a 50-token sample after each epoch): about 140 s on 2 idle CPU cores with one torch
thread (far longer with two contending ones: the subprocess uses one torch thread unless
`OMP_NUM_THREADS` is set).
test_ch07.py (instruction finetuning of a tiny model, 10 epochs on 15 examples) finds
`instruction-data.json` in its `tmp_path`, as if it had been downloaded: `download_and_load_file` reads
it without touching the network.

Not run: test_appendix_a.py, test_llama3.py and test_qwen3.py (modules this package does not cover).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import llms_from_scratch

from ..conftest import REPO, SHARED_DATA

BOOK_TESTS = Path(llms_from_scratch.__file__).parent / "tests"
LIGHT = ["test_ch02.py", "test_ch03.py", "test_generate.py", "test_ch04.py"]
TRAINING = ["test_ch05.py", "test_appendix_d.py"]  # 124M models trained for a few steps and epochs
SPAM = ["test_ch06.py", "test_appendix_e.py"]  # chapter 6's classifier (and with LoRA) on a tiny model
INSTRUCTIONS = ["test_ch07.py"]  # chapter 7's instruction finetuning on a tiny model

CONFTEST = """
import shutil
import sys
import urllib.request

import pytest

VERDICT = {verdict!r}
SPAM = {spam!r}
INSTRUCTIONS = {instructions!r}


def _no_network(*args, **kwargs):
    raise RuntimeError("this run must not download anything")


urllib.request.urlopen = _no_network
urllib.request.urlretrieve = _no_network


@pytest.fixture
def tmp_path(tmp_path_factory):  # the-verdict, the spam and instruction data already in place, as after a download
    path = tmp_path_factory.mktemp("book")
    shutil.copy(VERDICT, path / "the-verdict.txt")
    shutil.copy(INSTRUCTIONS, path / "instruction-data.json")
    (path / "sms_spam_collection").mkdir()
    shutil.copy(SPAM, path / "sms_spam_collection" / "SMSSpamCollection")  # extracted, not yet renamed
    return path


def pytest_sessionfinish(session):
    assert "llms_from_scratch" not in sys.modules, "the book's package was imported"
"""


def _ported(source: str) -> str:
    """The test file with `llms_from_scratch.` -> `hf_scratchgpt.book.` in its import lines only."""
    lines = source.splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        if re.match(r"\s*(from|import)\s+llms_from_scratch\.", line):
            lines[i] = line.replace("llms_from_scratch.", "hf_scratchgpt.book.")
            changed += 1
    assert changed, "no import line to change"
    ported = "".join(lines)
    assert "llms_from_scratch" not in ported
    return ported


def _run_book_tests(tmp_path, names, pytest_args=()):
    for name in names:
        (tmp_path / name).write_text(_ported((BOOK_TESTS / name).read_text(encoding="utf-8")), encoding="utf-8")
    conftest = CONFTEST.format(
        verdict=str(SHARED_DATA / "the-verdict.txt"),
        spam=str(SHARED_DATA / "SMSSpamCollection"),
        instructions=str(SHARED_DATA / "instruction-data.json"),
    )
    (tmp_path / "conftest.py").write_text(conftest)
    (tmp_path / "the-verdict.txt").write_bytes((SHARED_DATA / "the-verdict.txt").read_bytes())
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # TIKTOKEN_CACHE_DIR and HF_HUB_OFFLINE come from conftest
    env.setdefault("OMP_NUM_THREADS", "1")  # small shared CPUs: contending torch threads ran these 3-6x slower
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args, *names],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout


def test_books_tests_for_chapters_2_to_4_run_unchanged(tmp_path):
    out = _run_book_tests(tmp_path, LIGHT)
    assert re.search(r"\b\d+ passed\b", out) and "failed" not in out


def test_books_training_tests_for_chapter_5_and_appendix_d_run_unchanged(tmp_path):
    out = _run_book_tests(tmp_path, TRAINING)
    assert "3 passed" in out  # test_ch05 for GPTModel and GPTModelFast, test_appendix_d


def test_books_tests_for_ch06_and_appendix_e_run_unchanged(tmp_path):
    out = _run_book_tests(tmp_path, SPAM, pytest_args=["-rP"])  # -rP: the passed tests' printed lines too
    assert "2 passed" in out  # test_train_classifier and test_train_classifier_lora
    # the offline path: the extracted file found and renamed, no download tried
    assert out.count("sms_spam_collection/SMSSpamCollection and saved as") == 2 and "Primary URL" not in out


def test_books_tests_for_ch07_run_unchanged(tmp_path):
    out = _run_book_tests(tmp_path, INSTRUCTIONS, pytest_args=["-rP"])
    assert "1 passed" in out  # test_instruction_finetune: the book's first losses (10.9) and a falling loss
    # one batch an epoch (15 examples, batches of 8, drop_last): evaluations at steps 0 and 5, a sample each epoch
    assert "Ep 1 (Step 000000)" in out and "Ep 6 (Step 000005)" in out
    assert out.count("Below is an instruction that describes a task.") == 10
