"""Chapter 7 of the book: finetuning GPT to follow instructions (`llms_from_scratch.ch07`).

Every function keeps the book's name, signature and behaviour: `format_input` is the book's Alpaca
prompt (`hf_scratchgpt.prompts.format_input`, the one place the format is written); `InstructionDataset`
encodes the book's prompt + response text; the three collate functions give the book's tensors, built
on the package's `InstructionCollator` and `book_batch` (one padding implementation); `query_model`
speaks the book's Ollama `/api/chat` protocol (streamed JSON lines, seed 123, temperature 0) and
`generate_model_scores` asks it for the book's 0-100 scores, with the judge prompt of
`hf_scratchgpt.judge.judge_prompt`.

The end-token rule of `custom_collate_fn`: the book pads with `pad_token_id` (GPT-2's `<|endoftext|>`)
and then ignores every target equal to `pad_token_id` except the first of each row. It finds the
padding by token id, so a row whose text already holds an end token (a transformers GPT-2 tokenizer
encodes a literal `<|endoftext|>` as that id; tiktoken refuses the text) keeps that inner end token as
a target and loses the appended one and any later inner one. `InstructionCollator` masks by position
instead (the appended end token always stays a target, inner ones too). The two rules differ in one more
case, an empty row: its end token is at position 0, no target, and the book keeps the first padding
position as its one target, where the collator keeps none. `custom_collate_fn` applies the book's rule
on top of the collator, so it gives the book's tensors in every case.

Beyond the book: `download_and_load_file` works offline, reading a file already at `file_path` without
touching the network; when the file is missing and the download fails (or gives no JSON) it raises one
error that says where to put the file, and never leaves a partial file. `InstructionDataset` also
takes transformers tokenizers. `check_if_running` uses psutil (the book's dependency, not this
package's) when it is installed and otherwise reads Linux's `/proc`. `query_model` raises one error
naming the URL when no Ollama server answers there (or it answers with an error), and
`generate_model_scores` takes the server's `url` too.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..data.instruction import InstructionCollator, book_batch
from ..data.tokenize import encode_texts
from ..judge import judge_prompt
from ..prompts import format_input, response_prefix
from .ch05 import DOWNLOAD_TIMEOUT_S

OLLAMA_CHAT_URL = "http://localhost:11434/api/chat"  # the book's default: a local Ollama server
OLLAMA_OPTIONS = {"seed": 123, "temperature": 0, "num_ctx": 2048}  # the book's settings, for repeatable answers


# ----------------------------------------------------------------------------- the data (7.2-7.3)


class InstructionDataUnavailableError(urllib.error.URLError):
    """The instruction data is not on disk and could not be downloaded.

    A `URLError` (an `OSError`), the error the book's own download raises, so code that catches it keeps
    working.
    """

    def __str__(self) -> str:
        return str(self.reason)


def _download_json(url: str, file_path: Path) -> None:
    """Save the JSON document at `url` to `file_path`; nothing is written unless all of it parses."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
        raw = response.read()
    json.loads(raw.decode("utf-8"))  # a proxy's HTML page or a cut-off download is not saved
    file_path.parent.mkdir(parents=True, exist_ok=True)
    partial = file_path.with_name(file_path.name + ".part")
    try:
        partial.write_bytes(raw)
        os.replace(partial, file_path)
    finally:
        if partial.exists():
            partial.unlink()


def download_and_load_file(file_path: str | os.PathLike, url: str) -> Any:
    """The instruction records of the JSON file at `file_path`, downloaded from `url` first if it is missing.

    A file already at `file_path` is read as it is, without any network access (as in the book). Only
    when it is missing is `url` downloaded (giving up after `DOWNLOAD_TIMEOUT_S` without an answer)
    and saved there, in one piece.

    Args:
        file_path: Where the JSON file lies or is saved (the book: `instruction-data.json`).
        url: Where it is downloaded from (the book: the chapter's file on GitHub).

    Returns:
        The parsed JSON: for the book's file, a list of 1,100 `{instruction, input, output}` dicts.

    Raises:
        InstructionDataUnavailableError: The file is missing and the download failed, or did not give
            JSON (the original error is chained); the message says where to put the file.
        json.JSONDecodeError: The file at `file_path` is not JSON (the message names it).
    """
    file_path = Path(file_path)
    if not file_path.exists():
        try:
            _download_json(url, file_path)
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts; ValueError: not a URL, not JSON
            raise InstructionDataUnavailableError(
                f"Could not download the instruction data from {url} ({err}). Without a network, put the "
                f"instruction data (a JSON list of instruction/input/output records) at {file_path} (e.g. a "
                "copy of ../shared/data/instruction-data.json)."
            ) from err
    text = file_path.read_text(encoding="utf-8")
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise json.JSONDecodeError(f"{file_path} is not a JSON file ({err.msg})", err.doc, err.pos) from None


class InstructionDataset(Dataset):
    """The book's dataset: each record's prompt and response, encoded once (chapter 7.3).

    The text of a record is `format_input(entry)` + `"\\n\\n### Response:\\n"` + its output; `dataset[i]`
    is its list of token ids (no end token: the collate function appends it).

    Args:
        data: The records (`instruction`, `input`, `output`).
        tokenizer: The book's tiktoken encoding (which, as in the book, refuses a literal
            `<|endoftext|>` in a text) or a transformers tokenizer (no special tokens added).
    """

    def __init__(self, data: Sequence[Mapping[str, Any]], tokenizer: Any) -> None:
        self.data = data
        texts = [format_input(entry) + response_prefix("alpaca") + entry["output"] for entry in data]
        self.encoded_texts = [list(ids) for ids in encode_texts(tokenizer, texts)]

    def __getitem__(self, index: int) -> list[int]:
        return self.encoded_texts[index]

    def __len__(self) -> int:
        return len(self.data)


def _padded(batch: Sequence[Sequence[int]], pad_token_id: int, ignore_index: int = -100) -> dict[str, torch.Tensor]:
    """`InstructionCollator`'s batch: each row + one end token (`pad_token_id`), padded to the longest."""
    return InstructionCollator(pad_token_id=pad_token_id, ignore_index=ignore_index)(
        [{"input_ids": list(item)} for item in batch]
    )


def custom_collate_draft_1(
    batch: Sequence[Sequence[int]], pad_token_id: int = 50256, device: Any = "cpu"
) -> torch.Tensor:
    """The book's first draft: the inputs, each row with one end token appended and padded to the longest.

    The tensor is `(len(batch), longest row)`: the appended end token falls off the longest rows, as in
    the book (it is there for the targets of the later drafts).
    """
    inputs, _ = book_batch(_padded(batch, pad_token_id))
    return inputs.contiguous().to(device)


def custom_collate_draft_2(
    batch: Sequence[Sequence[int]], pad_token_id: int = 50256, device: Any = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's second draft: the inputs and the targets (the inputs shifted by one), no position ignored."""
    padded = _padded(batch, pad_token_id)
    inputs, _ = book_batch(padded)
    targets = padded["input_ids"][:, 1:]  # every position a target, padding included
    return inputs.contiguous().to(device), targets.contiguous().to(device)


def custom_collate_fn(
    batch: Sequence[Sequence[int]],
    pad_token_id: int = 50256,
    ignore_index: int = -100,
    allowed_max_length: int | None = None,
    device: Any = "cpu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's collate function (chapter 7.3): padded inputs and targets, the padding ignored.

    Each row gets one `pad_token_id` appended as its end token and the batch is padded to its longest
    row; the targets are the inputs shifted by one, with every target equal to `pad_token_id` except
    the first of each row set to `ignore_index` (the book's rule, by token id: see the module
    docstring for a text that holds an end token itself). `allowed_max_length` cuts inputs and targets
    to that many positions.

    Args:
        batch: Lists of token ids (an `InstructionDataset`'s items).
        pad_token_id: The end and padding id (GPT-2's `<|endoftext|>`).
        ignore_index: The target id the loss skips.
        allowed_max_length: Keep at most this many positions (the book's `inputs[:allowed_max_length]`).
        device: Where the tensors go.

    Returns:
        `(inputs, targets)`, two long tensors of shape `(len(batch), positions)`.
    """
    padded = _padded(batch, pad_token_id, ignore_index)
    inputs, targets = book_batch(padded)  # the collator's rule: the padding after each row's end token ignored
    # The book's rule, by id: a row's first pad-id target is kept, every later one ignored. It differs from
    # the collator's only for a row holding the pad id itself and for an empty row (whose first pad-id
    # target is padding: its end token is no target at all).
    is_pad = padded["input_ids"][:, 1:] == pad_token_id
    first_pad = is_pad & (is_pad.cumsum(dim=1) == 1)
    targets = torch.where(is_pad, torch.where(first_pad, pad_token_id, ignore_index), targets)
    if allowed_max_length is not None:
        inputs, targets = inputs[:, :allowed_max_length], targets[:, :allowed_max_length]
    return inputs.contiguous().to(device), targets.contiguous().to(device)


# ----------------------------------------------------------------------------- scoring with Ollama (7.8)


def _process_names() -> list[str]:
    """The names of the running processes, as psutil gives them (psutil if installed, else Linux's /proc)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return [proc.info["name"] or "" for proc in psutil.process_iter(["name"])]
    proc_root = Path("/proc")
    if not (proc_root / "self" / "comm").exists():
        raise RuntimeError("check_if_running needs psutil on this system (no Linux /proc): pip install psutil")
    names = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name = (entry / "comm").read_text().rstrip("\n")
            if len(name) >= 15:  # the kernel cuts names to 15 characters; psutil takes the full one from argv[0]
                argv0 = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                if os.path.basename(argv0).startswith(name):
                    name = os.path.basename(argv0)
        except OSError:  # the process ended meanwhile, or is not ours to read
            continue
        names.append(name)
    return names


def check_if_running(process_name: str) -> bool:
    """Whether a running process's name contains `process_name` (the book: is `ollama` running?).

    The process names come from psutil when it is installed (as in the book); without it, from Linux's
    `/proc/<pid>/comm` (the full name read from the command line when the kernel cut it at 15
    characters, as psutil does).

    Raises:
        RuntimeError: psutil is not installed and there is no `/proc` to read.
    """
    return any(process_name in name for name in _process_names())


class OllamaUnavailableError(urllib.error.URLError):
    """No Ollama server answered at the URL, or it answered with an error.

    A `URLError`, the error the book's `query_model` raises when no server answers.
    """

    def __str__(self) -> str:
        return str(self.reason)


def query_model(prompt: str, model: str = "llama3", url: str = OLLAMA_CHAT_URL) -> str:
    """The answer of an Ollama model to one user message, through Ollama's `/api/chat` (chapter 7.8).

    Sends the book's request: the prompt as one user message, with the options seed 123, temperature 0
    and a 2,048-token context (repeatable answers). The server streams JSON lines, each with a piece of
    the answer in `message.content`; the pieces are joined.

    Args:
        prompt: The user message.
        model: The Ollama model (fetched beforehand with `ollama pull`).
        url: The server's chat endpoint.

    Raises:
        OllamaUnavailableError: Nothing answers at `url`, or the server answers with an error (such as
            an unknown model); the message names the URL.
    """
    payload = {"model": model, "messages": [{"role": "user", "content": prompt}], "options": dict(OLLAMA_OPTIONS)}
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        response = urllib.request.urlopen(request)
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", errors="replace").strip()
        raise OllamaUnavailableError(
            f"The Ollama server at {url} answered HTTP {err.code}: {detail or err.reason}"
            f"{f' (is the model fetched? ollama pull {model})' if err.code == 404 else ''}"
        ) from err
    except (OSError, ValueError) as err:  # URLError (refused, unknown host), timeouts; ValueError: not a URL
        raise OllamaUnavailableError(
            f"No Ollama server answered at {url} ({getattr(err, 'reason', err)}). Start one with `ollama serve` "
            f"(and fetch the model with `ollama pull {model}`), or pass the URL of a running server."
        ) from err
    answer = []
    with response:
        for raw_line in response:  # one JSON object per line
            if not raw_line.strip():
                continue
            message = json.loads(raw_line.decode("utf-8"))
            if "error" in message:
                raise OllamaUnavailableError(f"The Ollama server at {url} reported an error: {message['error']}")
            answer.append(message["message"]["content"])
    return "".join(answer)


def generate_model_scores(
    json_data: Sequence[Mapping[str, Any]], json_key: str, model: str = "llama3", url: str = OLLAMA_CHAT_URL
) -> list[int]:
    """Scores from 0 to 100 that an Ollama model gives each record's response (chapter 7.8).

    For each record the judge is asked `hf_scratchgpt.judge.judge_prompt(entry, entry[json_key])` (the
    book's prompt: the instruction, the correct output, the response, "Respond with the integer number
    only."). An answer that is not an integer is printed ("Could not convert score: ...") and skipped,
    as in the book, so the list may be shorter than `json_data`.

    Args:
        json_data: The records, each with its model response under `json_key`.
        json_key: The key of the response to score (the book: `"model_response"`).
        model: The Ollama model that judges.
        url: The Ollama server's chat endpoint.
    """
    scores = []
    for entry in tqdm(json_data, desc="Scoring entries"):
        score = query_model(judge_prompt(entry, entry[json_key]), model, url)
        try:
            scores.append(int(score))
        except ValueError:
            print(f"Could not convert score: {score}")
            continue
    return scores


__all__ = [
    "OLLAMA_CHAT_URL",
    "InstructionDataUnavailableError",
    "InstructionDataset",
    "OllamaUnavailableError",
    "check_if_running",
    "custom_collate_draft_1",
    "custom_collate_draft_2",
    "custom_collate_fn",
    "download_and_load_file",
    "format_input",
    "generate_model_scores",
    "query_model",
]
