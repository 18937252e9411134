"""Instruction sets (chapter 7): records, the book's padding collate, packing, splits.

Records are `{"instruction", "input", "output"}` (`input` may be empty) or chat records
`{"messages": [{"role", "content"}, ...]}`. Prompt styles: `alpaca` (the book's exact text),
`phi3` (`<|user|>` / `<|assistant|>`) and `chat` (the tokenizer's chat template); they are defined
in `hf_scratchgpt.prompts` (`format_input`, `response_prefix`, `render` and `STYLES` are re-exported
here).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict, load_dataset

from ..paths import local_or_hub
from ..prompts import STYLES, format_input, render, response_prefix
from .classification import split_fractions
from .sources import check_text_file
from .tokenize import encode_texts


def _check_record(record: Any, index: int, where: str) -> None:
    if not isinstance(record, dict):
        raise ValueError(f"{where}: record {index}: expected an object, got {type(record).__name__}")
    if "messages" in record and record["messages"] is not None:
        msgs = record["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise ValueError(f"{where}: record {index}: 'messages' must be a non-empty list")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise ValueError(f"{where}: record {index}: message {j} needs string 'role' and 'content'")
        return
    for name in ("instruction", "output"):
        if not isinstance(record.get(name), str):
            raise ValueError(f"{where}: record {index}: missing or non-text field {name!r}")
    if record.get("input") is not None and not isinstance(record["input"], str):
        raise ValueError(f"{where}: record {index}: field 'input' must be text")


def read_json_records(path: Path, expected: str) -> list[Any]:
    """The records of a JSON array or JSONL file, not yet checked.

    Args:
        path: The file (`.jsonl`: one record per line; otherwise a JSON array).
        expected: What a record should be, for the message when there is none.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An empty or non-UTF-8 file, invalid JSON (with the line), or no records.
    """
    check_text_file(path)  # exists, not empty, UTF-8 (else: file and byte offset)
    raw = path.read_text(encoding="utf-8")
    if not raw.strip():
        raise ValueError(f"{path}: file is empty")
    if path.suffix.lower() == ".jsonl":
        records = []
        for lineno, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{lineno}: invalid JSON ({err.msg})") from None
    else:
        try:
            records = json.loads(raw)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path}: expected a JSON array of records, got {type(records).__name__}")
    if not records:
        raise ValueError(f"{path}: no records (expected {expected})")
    return records


def load_instruction_records(path: str | os.PathLike) -> Dataset:
    """Load and check instruction or chat records from a JSON array or JSONL file.

    Raises:
        FileNotFoundError: No such file.
        ValueError: An empty or non-UTF-8 file, invalid JSON (with the line), or a bad record (with its index).
    """
    path = Path(path)
    records = read_json_records(path, "{instruction, input, output} or {messages} objects")
    for i, record in enumerate(records):
        _check_record(record, i, os.fspath(path))
    if records and all("messages" not in r for r in records):
        ds = load_dataset("json", data_files=os.fspath(path), split="train")  # cached like every source
        return ds.map(_fill_input, batched=True) if "input" not in ds.column_names else ds
    return Dataset.from_list(records)


def _fill_input(batch: dict) -> dict:
    return {"input": [""] * len(batch["instruction"])}


def split_instructions(
    ds: Dataset, seed: int | None = 123, fractions: Sequence[float] = (0.85, 0.1, 0.05)
) -> DatasetDict:
    """The book's 85 % train / 10 % test / 5 % validation split (935 / 110 / 55 of 1,100).

    Args:
        ds: The records.
        seed: Shuffle with this seed first; None keeps the file order, as the book's chapter 7 does
            (`data[:935]`, `data[935:1045]`, `data[1045:]`).
        fractions: Train, test and validation shares; all parts but the last get `int(n * fraction)` records.
    """
    names = ("train", "test", "validation")
    if seed is not None:
        return split_fractions(ds, fractions, names, seed)
    if len(fractions) != 3 or abs(sum(fractions) - 1.0) > 1e-9 or min(fractions) < 0:
        raise ValueError(f"fractions {list(fractions)} must be 3 non-negative numbers summing to 1")
    n_train, n_test = int(len(ds) * fractions[0]), int(len(ds) * fractions[1])
    bounds = (0, n_train, n_train + n_test, len(ds))
    return DatasetDict({name: ds.select(range(a, b) if b > a else []) for name, a, b in zip(names, bounds, bounds[1:])})


INSTRUCTION_SPLITS = ("train", "validation", "test")


def load_instruction_splits(
    data: str | os.PathLike,
    val_fraction: float = 0.05,
    test_fraction: float = 0.10,
    seed: int | None = None,
    load_records: Callable[[str | os.PathLike], Dataset] | None = None,
    what: str = "instruction data",
) -> DatasetDict:
    """The train/validation/test records of an instruction set.

    Args:
        data: A JSON/JSONL file of records (split the book's way), a folder of ready splits
            (`train.jsonl` and, if present, `validation.jsonl` and `test.jsonl`, or `.json`), or a Hub
            dataset id (its train/validation/test splits when it has a test split, else its train split
            split the book's way).
        val_fraction: Share of the records for validation (a single file or Hub split).
        test_fraction: Share of the records for the test (a single file or Hub split).
        seed: Shuffle before splitting (None: file order, the book).
        load_records: Reads and checks one file (default: `load_instruction_records`; preference
            data brings its own).
        what: What the data is, for the message when it is not found.

    Raises:
        FileNotFoundError: A missing file or a folder without `train.jsonl`.
        ValueError: What `load_instruction_records` raises (the file and record are named), or fractions
            that leave no training records.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must leave training records"
        )
    load_records = load_records or load_instruction_records
    where = local_or_hub(data, what)
    if isinstance(where, str):
        hub = load_dataset(where)
        if "test" in hub and "train" in hub:
            return DatasetDict({k: hub[k] for k in INSTRUCTION_SPLITS if k in hub})
        records = hub["train"]
    elif where.is_dir():
        parts = {}
        for name in INSTRUCTION_SPLITS:
            found = [where / f"{name}{ext}" for ext in (".jsonl", ".json") if (where / f"{name}{ext}").is_file()]
            if found:
                parts[name] = load_records(found[0])
        if "train" not in parts:
            raise FileNotFoundError(f"{where}: no train.jsonl (or train.json) in this folder of splits")
        empty = Dataset.from_dict({k: [] for k in parts["train"].column_names}, features=parts["train"].features)
        return DatasetDict({name: parts.get(name, empty) for name in INSTRUCTION_SPLITS})
    else:
        records = load_records(where)
    fractions = (1.0 - val_fraction - test_fraction, test_fraction, val_fraction)
    splits = split_instructions(records, seed=seed, fractions=fractions)
    return DatasetDict({name: splits[name] for name in INSTRUCTION_SPLITS})


def encode_record(record: dict[str, Any], tokenizer: Any, style: str) -> tuple[list[int], int]:
    """A record's token ids (prompt + response, without the end token) and its prompt length.

    The end token is left to the collator (or packing), which appends one; a chat template's own end
    token is removed. The prompt length is the prefix the ids share with the prompt alone, so a
    merge across the boundary counts as response.
    """
    prompt, full = render(record, style, tokenizer)
    ids, prompt_ids = encode_texts(tokenizer, [full, prompt])
    if style == "chat" and tokenizer.eos_token and full.endswith(tokenizer.eos_token):
        if ids[-1:] == [tokenizer.eos_token_id]:
            ids = ids[:-1]
    return ids, common_prefix(ids, prompt_ids)


def _tokenize_records(batch: dict, tokenizer: Any, style: str) -> dict:
    keys = list(batch)
    input_ids, prompt_lengths = [], []
    for row in range(len(batch[keys[0]])):
        ids, prompt_length = encode_record({k: batch[k][row] for k in keys}, tokenizer, style)
        input_ids.append(ids)
        prompt_lengths.append(prompt_length)
    return {"input_ids": input_ids, "prompt_length": prompt_lengths}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids `a` and `b` share."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def tokenize_instructions(ds: Dataset | DatasetDict, tokenizer: Any, style: str = "alpaca"):
    """Batched, cached map: records -> `input_ids` (prompt + response) and `prompt_length`."""
    if style not in STYLES:
        raise ValueError(f"prompt style must be one of {STYLES}, got {style!r}")
    columns = (next(iter(ds.values())) if isinstance(ds, DatasetDict) else ds).column_names
    return ds.map(
        _tokenize_records, batched=True, remove_columns=columns, fn_kwargs={"tokenizer": tokenizer, "style": style}
    )


@dataclass
class InstructionCollator:
    """The book's `custom_collate_fn` in the transformers label convention.

    Each row gets one `<|endoftext|>` appended and the batch is padded to its longest row. `labels`
    equal `input_ids` except: every padding position after the appended end token is -100 (the first
    end token stays a target, so the model learns to stop), and with `mask_prompt` the prompt
    tokens are -100 too. The model shifts labels, so the targets are the book's `inputs` shifted by
    one (`book_batch` gives the book's `(inputs, targets)` pair). `allowed_max_length` truncates
    the book's inputs/targets to that many tokens.
    """

    pad_token_id: int
    ignore_index: int = -100
    allowed_max_length: int | None = None
    mask_prompt: bool = False

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        if "position_ids" in rows[0]:
            return self._packed(rows)
        width = max(len(r["input_ids"]) + 1 for r in rows)
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), self.ignore_index, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            input_ids[i, :n] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            labels[i, : n + 1] = input_ids[i, : n + 1]  # the appended end token (== pad id) is a target
            mask[i, : n + 1] = 1
            if self.mask_prompt:
                labels[i, : r["prompt_length"]] = self.ignore_index
        batch = {"input_ids": input_ids, "attention_mask": mask, "labels": labels}
        if self.allowed_max_length is not None:
            batch = {k: v[:, : self.allowed_max_length + 1] for k, v in batch.items()}
        return batch

    def _packed(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_token_id, dtype=torch.long),
            "labels": torch.full((len(rows), width), self.ignore_index, dtype=torch.long),
            "position_ids": torch.zeros((len(rows), width), dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
        }
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            for key in ("input_ids", "labels", "position_ids"):
                batch[key][i, :n] = torch.as_tensor(r[key], dtype=torch.long)
            batch["attention_mask"][i, :n] = 1
        return batch


def book_batch(batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """The book's `(inputs, targets)`: inputs without the last position, targets shifted by one."""
    return batch["input_ids"][:, :-1], batch["labels"][:, 1:]


def pack_examples(
    tokd: Dataset, max_length: int, eos_id: int, mask_prompt: bool = False, ignore_index: int = -100
) -> Dataset:
    """Pack whole examples (each with its end token) into rows of at most `max_length` tokens.

    Greedy in order; `position_ids` restart at each example; an example's first token is never a
    target of the one before; `labels` keep the per-example masking. Longer examples are truncated.
    The collator pads packed rows as they are.
    """
    rows: list[dict] = []
    current: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}

    def flush() -> None:
        if current["input_ids"]:
            rows.append({k: list(v) for k, v in current.items()})
            for v in current.values():
                v.clear()

    for example in tokd:
        ids = list(example["input_ids"])[: max_length - 1] + [eos_id]
        labels = list(ids)
        labels[0] = ignore_index  # never predict an example's first token from the previous one
        if mask_prompt:
            n = min(example["prompt_length"], len(labels))
            labels[:n] = [ignore_index] * n
        if len(current["input_ids"]) + len(ids) > max_length:
            flush()
        current["input_ids"].extend(ids)
        current["labels"].extend(labels)
        current["position_ids"].extend(range(len(ids)))  # positions restart at each example
    flush()
    return Dataset.from_list(rows)


__all__ = [
    "STYLES",
    "InstructionCollator",
    "INSTRUCTION_SPLITS",
    "book_batch",
    "common_prefix",
    "encode_record",
    "format_input",
    "load_instruction_records",
    "load_instruction_splits",
    "read_json_records",
    "pack_examples",
    "render",
    "response_prefix",
    "split_instructions",
    "tokenize_instructions",
]
