"""Preference pairs for DPO: records, their tokens, and the collate that puts chosen and rejected side by side.

Records (JSON array or JSONL, a folder of splits or a Hub dataset), one of three forms in a file:

- the book's: `{"instruction", "input"?, "chosen", "rejected"}` (an `output` field is ignored);
- TRL's standard form: `{"prompt": str, "chosen": str, "rejected": str}`; the prompt is the
  instruction, rendered in the run's prompt style like any instruction;
- TRL's conversational form: `{"prompt": [messages], "chosen": [assistant message], "rejected":
  [assistant message]}`, rendered with the tokenizer's chat template (prompt style `chat`).

Each pair is tokenized like an instruction record whose output is the chosen (or rejected)
response (`encode_record`); the prompt is the part both sequences share with the prompt alone (so a
merge across the boundary counts as response, as TRL does it). The collator appends one end token
to every response and stacks the batch's chosen sequences above its rejected ones, `(2b, T)`, with
`labels` equal to the ids on the response and end token and -100 on the prompt and the padding.

Pairs whose chosen and rejected responses are identical carry no preference; a run leaves them out
and counts them (`drop_identical`). Pairs longer than `max_length` (prompt + longer response + end
token): `overlong: skip` leaves the pair out; `overlong: truncate` keeps the first `max_length`
tokens of each sequence (TRL's `keep_start`) and leaves out only a pair whose prompt leaves no room
for a response token. Either way the count is reported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict

from ..paths import local_or_hub
from .instruction import common_prefix, encode_record, load_instruction_splits, read_json_records

EXPECTED = "{instruction, input, chosen, rejected}, {prompt, chosen, rejected} or conversational objects"
OVERLONG = ("skip", "truncate")  # the rules of `fitting_pairs` (the same names as instruction tuning's)
TEXT_COLUMNS = ("instruction", "input", "chosen", "rejected")
CHAT_COLUMNS = ("prompt_messages", "chosen", "rejected")


def _messages(value: Any, where: str, name: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: {name!r} must be a non-empty list of messages")
    for j, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"{where}: {name!r} message {j} needs string 'role' and 'content'")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _response(value: Any, where: str, name: str) -> str:
    """A response as text: a string, or a list of one assistant message (TRL's conversational form)."""
    if isinstance(value, list):
        messages = _messages(value, where, name)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise ValueError(f"{where}: {name!r} must be one assistant message")
        return messages[0]["content"]
    if not isinstance(value, str):
        raise ValueError(f"{where}: missing or non-text field {name!r}")
    return value


def normalize_preference(record: Any, where: str) -> dict[str, Any]:
    """One checked record in a uniform shape: text (`TEXT_COLUMNS`) or conversational (`CHAT_COLUMNS`).

    Args:
        record: A raw record.
        where: The file and record index, for messages.

    Raises:
        ValueError: Not an object, no prompt (`instruction` or `prompt`), a missing or non-text `chosen` or
            `rejected`, or a malformed message list. (Identical `chosen` and `rejected` are valid records
            that carry no preference: `drop_identical` leaves them out of a run.)
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected an object, got {type(record).__name__}")
    for name in ("chosen", "rejected"):
        if name not in record or record[name] is None:
            raise ValueError(f"{where}: missing field {name!r} (a preference record needs chosen and rejected)")
    prompt = record.get("prompt")
    if prompt is None and record.get("instruction") is None and isinstance(record["chosen"], list):
        raise ValueError(
            f"{where}: no 'prompt': TRL's implicit-prompt form (the prompt inside chosen and rejected) is not "
            "read; give the prompt messages as 'prompt' and one assistant message as 'chosen' and 'rejected'"
        )
    chosen, rejected = (_response(record[n], where, n) for n in ("chosen", "rejected"))
    if isinstance(prompt, list):
        return {"prompt_messages": _messages(prompt, where, "prompt"), "chosen": chosen, "rejected": rejected}
    instruction = record.get("instruction", prompt)
    if not isinstance(instruction, str):
        raise ValueError(f"{where}: missing or non-text field 'instruction' (or 'prompt')")
    if record.get("input") is not None and not isinstance(record["input"], str):
        raise ValueError(f"{where}: field 'input' must be text")
    return {"instruction": instruction, "input": record.get("input") or "", "chosen": chosen, "rejected": rejected}


def _from_rows(rows: Any, where: str) -> Dataset:
    normalized = [normalize_preference(r, f"{where}: record {i}") for i, r in enumerate(rows)]
    kinds = {"prompt_messages" in r for r in normalized}
    if len(kinds) > 1:
        raise ValueError(f"{where}: mixes conversational and text records; use one form per file")
    return Dataset.from_list(normalized)


def load_preference_records(path: str | os.PathLike) -> Dataset:
    """Load and check preference records from a JSON array or JSONL file (normalized, see the module).

    Raises:
        FileNotFoundError: No such file.
        ValueError: An empty or non-UTF-8 file, invalid JSON (with the line), or a bad record (its index named).
    """
    path = Path(path)
    return _from_rows(read_json_records(path, EXPECTED), os.fspath(path))


def load_preference_splits(
    data: str | os.PathLike, val_fraction: float = 0.05, test_fraction: float = 0.10, seed: int | None = None
) -> DatasetDict:
    """The train/validation/test pairs of a preference set (split like `load_instruction_splits`).

    A single file is split the book's way (85 % train, 10 % test, 5 % validation, in file order
    unless `seed`); a folder of splits or a Hub dataset is used as it is.
    """
    splits = load_instruction_splits(
        data, val_fraction, test_fraction, seed, load_records=load_preference_records, what="preference data"
    )
    if isinstance(local_or_hub(data, "preference data"), str):  # a Hub dataset's rows are checked here
        for name, part in splits.items():
            splits[name] = _from_rows(part, f"{data} ({name})")
    kinds = {"prompt_messages" in p.column_names for p in splits.values() if len(p)}
    if len(kinds) > 1:
        raise ValueError(f"{data}: mixes conversational and text records across splits; use one form")
    return splits


def drop_identical(ds: Dataset) -> tuple[Dataset, int]:
    """The pairs whose chosen and rejected responses differ, and how many were identical (no preference:
    their DPO loss is log 2 whatever the model, with no gradient; the book's file has 6 such pairs)."""
    kept = ds.filter(lambda chosen, rejected: chosen != rejected, input_columns=["chosen", "rejected"])
    return kept, len(ds) - len(kept)


def response_record(pair: dict[str, Any], which: str) -> dict[str, Any]:
    """The instruction (or chat) record of a pair whose response is `pair[which]` (chosen or rejected)."""
    if pair.get("prompt_messages"):
        return {"messages": [*pair["prompt_messages"], {"role": "assistant", "content": pair[which]}]}
    return {"instruction": pair["instruction"], "input": pair.get("input") or "", "output": pair[which]}


def encode_pair(pair: dict[str, Any], tokenizer: Any, style: str) -> dict[str, list[int]]:
    """`prompt_ids`, `chosen_ids` and `rejected_ids` (responses without the end token) of a pair."""
    chosen, chosen_prompt = encode_record(response_record(pair, "chosen"), tokenizer, style)
    rejected, rejected_prompt = encode_record(response_record(pair, "rejected"), tokenizer, style)
    n = min(chosen_prompt, rejected_prompt, common_prefix(chosen, rejected))
    return {"prompt_ids": chosen[:n], "chosen_ids": chosen[n:], "rejected_ids": rejected[n:]}


def _encode_batch(batch: dict, tokenizer: Any, style: str) -> dict:
    keys = list(batch)
    out: dict[str, list] = {"prompt_ids": [], "chosen_ids": [], "rejected_ids": []}
    for row in range(len(batch[keys[0]])):
        for k, v in encode_pair({k: batch[k][row] for k in keys}, tokenizer, style).items():
            out[k].append(v)
    return out


def tokenize_preferences(ds: Dataset | DatasetDict, tokenizer: Any, style: str) -> Dataset | DatasetDict:
    """Batched, cached map: pairs -> `prompt_ids`, `chosen_ids`, `rejected_ids`."""
    columns = (next(iter(ds.values())) if isinstance(ds, DatasetDict) else ds).column_names
    return ds.map(
        _encode_batch, batched=True, remove_columns=columns, fn_kwargs={"tokenizer": tokenizer, "style": style}
    )


def pair_length(example: dict[str, list[int]]) -> int:
    """Tokens of the longer of a pair's two sequences, end token included."""
    return len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"])) + 1


def fitting_pairs(tokenized: Dataset, max_length: int, overlong: str) -> list[int]:
    """The indices of the pairs kept under the `overlong` rule (see the module)."""
    if overlong not in OVERLONG:
        raise ValueError(f"overlong must be one of {OVERLONG}, got {overlong!r}")
    if overlong == "skip":
        return [i for i, e in enumerate(tokenized) if pair_length(e) <= max_length]
    return [i for i, ids in enumerate(tokenized["prompt_ids"]) if len(ids) < max_length]


@dataclass
class PreferenceCollator:
    """Chosen sequences above rejected ones: `input_ids`, `attention_mask`, `labels`, each `(2b, T)`.

    Every sequence is prompt + response + one end token, right-padded with `pad_token_id`; `labels`
    are -100 on the prompt and the padding. `max_length` cuts every sequence to its first
    `max_length` tokens (TRL's `keep_start`).
    """

    pad_token_id: int
    eos_token_id: int
    max_length: int | None = None
    ignore_index: int = -100

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        sequences, masks = [], []
        for which in ("chosen_ids", "rejected_ids"):
            for r in rows:
                prompt, response = list(r["prompt_ids"]), [*r[which], self.eos_token_id]
                ids = (prompt + response)[: self.max_length]
                sequences.append(ids)
                masks.append(([False] * len(prompt) + [True] * len(response))[: self.max_length])
        width = max(len(ids) for ids in sequences)
        batch = {
            "input_ids": torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(sequences), width), dtype=torch.long),
            "labels": torch.full((len(sequences), width), self.ignore_index, dtype=torch.long),
        }
        for i, (ids, response) in enumerate(zip(sequences, masks)):
            ids_t = torch.as_tensor(ids, dtype=torch.long)
            batch["input_ids"][i, : len(ids)] = ids_t
            batch["attention_mask"][i, : len(ids)] = 1
            batch["labels"][i, : len(ids)] = ids_t.masked_fill(~torch.as_tensor(response), self.ignore_index)
        return batch


__all__ = [
    "OVERLONG",
    "PreferenceCollator",
    "drop_identical",
    "encode_pair",
    "fitting_pairs",
    "load_preference_records",
    "load_preference_splits",
    "normalize_preference",
    "pair_length",
    "response_record",
    "tokenize_preferences",
]
