"""Chapter 7: the book's prompt, dataset, collate functions, download (offline) and Ollama scoring, against
the book's own `llms_from_scratch.ch07`."""

import importlib
import inspect
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import tiktoken
import torch
from llms_from_scratch import ch07 as book
from torch.utils.data import DataLoader

from hf_scratchgpt.book import ch07 as ours
from hf_scratchgpt.data.instruction import InstructionCollator, book_batch

from .test_api_parity import _assert_compatible, _book_public_names

URL = "https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/instruction-data.json"
END = 50256  # GPT-2's <|endoftext|>, the book's pad and end id


@pytest.fixture
def records(shared_data):
    return json.loads((shared_data / "instruction-data.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tokenizer():
    return tiktoken.get_encoding("gpt2")


def test_public_names_and_signatures():
    names = _book_public_names(book)
    assert set(names) >= {"download_and_load_file", "InstructionDataset", "custom_collate_fn", "query_model"}
    mine = importlib.import_module("hf_scratchgpt.book.ch07")
    for name in names:
        _assert_compatible(getattr(book, name), getattr(mine, name), f"ch07.{name}")
    for method in ("__getitem__", "__len__"):
        assert list(inspect.signature(getattr(ours.InstructionDataset, method)).parameters) == list(
            inspect.signature(getattr(book.InstructionDataset, method)).parameters
        )


def test_format_input_is_the_books_on_every_record(records):
    assert len(records) == 1100
    assert {bool(entry["input"]) for entry in records} == {True, False}  # both kinds of prompt
    for entry in records:
        assert ours.format_input(entry) == book.format_input(entry)


def test_instruction_dataset_gives_the_books_token_ids(records, tokenizer, gpt2_tokenizer):
    data = records[:40] + records[-20:]
    mine, theirs = ours.InstructionDataset(data, tokenizer), book.InstructionDataset(data, tokenizer)
    assert len(mine) == len(theirs) == 60
    assert [mine[i] for i in range(len(mine))] == [theirs[i] for i in range(len(theirs))]
    assert mine.data is data and mine.encoded_texts == theirs.encoded_texts
    hf = ours.InstructionDataset(data, gpt2_tokenizer)  # the package's GPT-2 tokenizer: the same ids
    assert hf.encoded_texts == mine.encoded_texts and all(type(ids) is list for ids in hf.encoded_texts)


def test_an_end_token_inside_a_text(records, tokenizer, gpt2_tokenizer):
    """tiktoken refuses a literal <|endoftext|>, as in the book; a transformers GPT-2 tokenizer encodes its id."""
    entry = {**records[0], "output": records[0]["output"] + " <|endoftext|> and more"}
    for module in (ours, book):
        with pytest.raises(ValueError, match="special token"):
            module.InstructionDataset([entry], tokenizer)
    ids = ours.InstructionDataset([entry], gpt2_tokenizer)[0]
    assert ids[ids.index(END) :] == [END, *tokenizer.encode(" and more")]


# ----------------------------------------------------------------------------- the collate functions

BOOK_EXAMPLE = [[0, 1, 2, 3, 4], [5, 6], [7, 8, 9]]  # the chapter's own batch
EDGE_BATCHES = {
    "end token inside a text": [[1, END, 2, 3], [4, 5], [END, 7]],
    "two inside, one at the end": [[END, 1, END, 2, END], [3]],
    "the longest row holds one": [[1, 2, END, 3, 4, 5, 6], [7, 8]],
    "same lengths, no padding": [[1, 2, 3], [4, 5, 6]],
    "an empty row": [[], [1, 2]],
}


def _batches(records, tokenizer):
    items = ours.InstructionDataset(records[:12], tokenizer)
    data = [[items[i] for i in range(j, j + 4)] for j in range(0, 12, 4)]
    return [BOOK_EXAMPLE, *data, *EDGE_BATCHES.values()]


def _assert_same(mine, theirs):
    mine = mine if isinstance(mine, tuple) else (mine,)
    theirs = theirs if isinstance(theirs, tuple) else (theirs,)
    assert len(mine) == len(theirs)
    for a, b in zip(mine, theirs):
        assert a.dtype == b.dtype == torch.long and a.shape == b.shape
        assert torch.equal(a, b), (a, b)


def test_the_drafts_give_the_books_tensors(records, tokenizer):
    for batch in _batches(records, tokenizer):
        _assert_same(ours.custom_collate_draft_1(batch), book.custom_collate_draft_1(batch))
        _assert_same(ours.custom_collate_draft_2(batch), book.custom_collate_draft_2(batch))
        _assert_same(
            ours.custom_collate_draft_2(batch, pad_token_id=0), book.custom_collate_draft_2(batch, pad_token_id=0)
        )


@pytest.mark.parametrize("allowed_max_length", [None, 100, 4, 1, 0])
def test_custom_collate_fn_gives_the_books_tensors(records, tokenizer, allowed_max_length):
    for batch in _batches(records, tokenizer):
        for kwargs in ({}, {"pad_token_id": 2, "ignore_index": -1}):  # another pad id: the edge case elsewhere
            mine = ours.custom_collate_fn(batch, allowed_max_length=allowed_max_length, **kwargs)
            theirs = book.custom_collate_fn(batch, allowed_max_length=allowed_max_length, **kwargs)
            _assert_same(mine, theirs)
            assert mine[0].is_contiguous() and mine[1].is_contiguous()


def test_the_books_rule_differs_from_the_collator_only_for_an_end_token_inside_a_text(records, tokenizer):
    """The book ignores every pad-id target after a row's first, wherever it is; the collator ignores the padding.

    So an end token inside a text costs the appended one its target, and an empty row (whose end token
    is no target) keeps its first padding position as a target.
    """
    for batch in _batches(records, tokenizer):
        inputs, targets = ours.custom_collate_fn(batch)
        collated = InstructionCollator(pad_token_id=END)([{"input_ids": item} for item in batch])
        collator_inputs, collator_targets = book_batch(collated)
        assert torch.equal(inputs, collator_inputs)
        for row, item in enumerate(batch):
            inner, end_position = END in item[1:], len(item) - 1  # a target equal to the end id before the appended one
            assert torch.equal(targets[row], collator_targets[row]) != (inner or not item), (batch, row)
            if inner:  # the collator keeps the appended end token a target; the book ignores it
                assert collator_targets[row, end_position] == END and targets[row, end_position] == -100
            if not item:
                assert (collator_targets[row] == -100).all() and targets[row, 0] == END


def test_custom_collate_fn_in_a_data_loader_on_a_device(records, tokenizer):
    dataset = ours.InstructionDataset(records[:10], tokenizer)
    collate = partial(ours.custom_collate_fn, device=torch.device("cpu"), allowed_max_length=64)
    book_collate = partial(book.custom_collate_fn, device=torch.device("cpu"), allowed_max_length=64)
    for (a, b), (c, d) in zip(
        DataLoader(dataset, batch_size=4, collate_fn=collate),
        DataLoader(dataset, batch_size=4, collate_fn=book_collate),
    ):
        _assert_same((a, b), (c, d))
        assert a.shape[1] <= 64 and a.device.type == "cpu"


# ----------------------------------------------------------------------------- the download, offline


@pytest.fixture
def no_network(monkeypatch):
    """urlopen fails as without a network, and counts its calls."""
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_a_file_already_there_is_loaded_without_the_network(tmp_path, shared_data, no_network):
    file_path = tmp_path / "instruction-data.json"
    file_path.write_bytes((shared_data / "instruction-data.json").read_bytes())
    data = ours.download_and_load_file(file_path, URL)
    assert data == book.download_and_load_file(file_path, URL) and len(data) == 1100
    assert ours.download_and_load_file(str(file_path), URL) == data  # a str path works too
    assert not no_network


def test_no_file_and_no_network_raises_one_clear_error(tmp_path, no_network):
    file_path = tmp_path / "instruction-data.json"
    with pytest.raises(ours.InstructionDataUnavailableError) as info:
        ours.download_and_load_file(file_path, URL)
    message = str(info.value)
    assert str(file_path) in message and URL in message and "instruction-data.json" in message
    assert isinstance(info.value, urllib.error.URLError)  # what the book's download raises
    assert isinstance(info.value.__cause__, urllib.error.URLError) and no_network == [URL]
    assert not list(tmp_path.iterdir())  # nothing left behind


class _Body:
    """A downloaded body, as `urlopen` gives it (a context manager with `read`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, *args):
        return self.data


def test_a_download_is_saved_whole_and_only_when_it_is_json(tmp_path, records, monkeypatch):
    file_path = tmp_path / "data" / "instruction-data.json"
    body = json.dumps(records[:3]).encode()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: _Body(body))
    assert ours.download_and_load_file(file_path, URL) == records[:3]
    assert file_path.read_bytes() == body and sorted(p.name for p in file_path.parent.iterdir()) == [file_path.name]

    other = tmp_path / "other.json"
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, *a, **k: _Body(b"<html>sign in to the wifi</html>"))
    with pytest.raises(ours.InstructionDataUnavailableError, match="other.json"):
        ours.download_and_load_file(other, URL)
    assert not other.exists() and not (tmp_path / "other.json.part").exists()


def test_a_file_that_is_not_json_is_named(tmp_path, no_network):
    file_path = tmp_path / "instruction-data.json"
    file_path.write_text("[{")
    with pytest.raises(json.JSONDecodeError, match="instruction-data.json"):
        ours.download_and_load_file(file_path, URL)
    assert not no_network


# ----------------------------------------------------------------------------- Ollama's /api/chat


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """The tiny server is on 127.0.0.1: no proxy variable of the machine may divert the requests."""
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


class _Ollama:
    """A tiny server speaking Ollama's /api/chat: the answer streamed as JSON lines, a few characters each."""

    def __init__(self, answer):
        self.answer, self.requests = answer, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append((self.path, self.headers["Content-Type"], body))
                if body["model"] == "missing":
                    self.send_response(404)
                    self.end_headers()
                    self.wfile.write(b'{"error":"model \\"missing\\" not found, try pulling it first"}')
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                text = owner.answer(body["messages"][-1]["content"])
                for start in range(0, len(text), 3):
                    piece = {
                        "model": body["model"],
                        "message": {"role": "assistant", "content": text[start : start + 3]},
                    }
                    self.wfile.write(json.dumps({**piece, "done": False}).encode() + b"\n")
                    self.wfile.flush()
                done = {"model": body["model"], "message": {"role": "assistant", "content": ""}, "done": True}
                self.wfile.write(json.dumps(done).encode() + b"\n")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/chat"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_query_model_speaks_the_books_protocol():
    answer = "Déjà vu:\nthe answer is 42, streamed in pieces."
    with _Ollama(lambda prompt: answer + f" ({len(prompt)})") as server:
        mine = ours.query_model("What is the answer? ünïcode", url=server.url)
        theirs = book.query_model("What is the answer? ünïcode", url=server.url)
        assert ours.query_model("Hi", "phi3", server.url) == answer + " (2)"
    assert mine == theirs == answer + " (27)"
    (ours_request, book_request, phi3_request) = server.requests
    assert ours_request == book_request  # same path, content type and JSON body
    path, content_type, body = ours_request
    assert path == "/api/chat" and content_type == "application/json"
    assert body["model"] == "llama3" and body["options"] == {"seed": 123, "temperature": 0, "num_ctx": 2048}
    assert phi3_request[2]["model"] == "phi3"


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_server_gives_one_clear_error():
    url = f"http://127.0.0.1:{_free_port()}/api/chat"  # nothing listens there
    with pytest.raises(ours.OllamaUnavailableError) as info:
        ours.query_model("Hi", url=url)
    assert url in str(info.value) and "ollama serve" in str(info.value)
    assert isinstance(info.value, urllib.error.URLError)  # what the book's query_model raises
    with pytest.raises(urllib.error.URLError):
        book.query_model("Hi", url=url)


def test_a_missing_model_is_named():
    with _Ollama(lambda prompt: "unused") as server, pytest.raises(ours.OllamaUnavailableError) as info:
        ours.query_model("Hi", "missing", server.url)
    assert server.url in str(info.value) and "404" in str(info.value) and "not found" in str(info.value)


def test_generate_model_scores_asks_the_books_question(records, monkeypatch, capsys):
    data = [{**entry, "model_response": entry["output"][::-1]} for entry in records[:4]]
    data[2]["model_response"] = "UNSCORABLE"

    def judge(prompt):
        return "I cannot score this." if "UNSCORABLE" in prompt else str(len(prompt) % 101)

    with _Ollama(judge) as server:
        mine = ours.generate_model_scores(data, "model_response", url=server.url)
        mine_out = capsys.readouterr().out
        query = book.query_model
        monkeypatch.setattr(book, "query_model", lambda prompt, model: query(prompt, model, server.url))
        theirs = book.generate_model_scores(data, "model_response")
        theirs_out = capsys.readouterr().out
    assert mine == theirs and len(mine) == 3 and all(0 <= score <= 100 for score in mine)
    assert mine_out == theirs_out == "Could not convert score: I cannot score this.\n"
    requests = [body for _, _, body in server.requests]
    assert requests[:4] == requests[4:]  # the same prompts, word for word
    assert "Respond with the integer number only." in requests[0]["messages"][0]["content"]


# ----------------------------------------------------------------------------- check_if_running


@pytest.fixture
def long_named_process(tmp_path):
    """A running `sleep` whose name is longer than the kernel's 15 characters."""
    name = f"sleepy_{uuid.uuid4().hex[:16]}"
    (tmp_path / name).symlink_to("/bin/sleep")
    process = subprocess.Popen([str(tmp_path / name), "30"])
    comm = Path(f"/proc/{process.pid}/comm")
    deadline = time.monotonic() + 10
    while comm.read_text().strip() != name[:15]:  # Popen returns before the child has exec'd `sleep`
        assert time.monotonic() < deadline, f"{name} did not start within 10 s"
        time.sleep(0.01)
    try:
        yield name
    finally:
        process.kill()
        process.wait()


@pytest.mark.skipif(not Path("/proc/self/comm").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("with_psutil", [True, False])
def test_check_if_running(long_named_process, monkeypatch, with_psutil):
    psutil = pytest.importorskip("psutil")
    own_name = psutil.Process(os.getpid()).name()
    if not with_psutil:
        monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` fails: the /proc path
    for name in (own_name, long_named_process, long_named_process[:20]):
        assert ours.check_if_running(name), name
    assert not ours.check_if_running(f"no-such-process-{uuid.uuid4().hex}")
    if with_psutil:
        assert book.check_if_running(own_name) and book.check_if_running(long_named_process)
