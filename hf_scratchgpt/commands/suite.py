"""`scratchgpt make-instruction-suite`: write the generated instruction suite as a folder of splits."""

from __future__ import annotations

import json
from pathlib import Path

from ..data.classification import quiet_progress
from ..data.instruction_suite import (
    COLUMNS,
    HELD_OUT_COMBINATIONS,
    HELD_OUT_RULE,
    build_instruction_suite,
    family_counts,
    near_miss,
)
from ..folders import atomic_output_dir, check_output_dir
from ..prompts import TEMPLATE_STYLES, render

SUITE_FILE = "suite.json"
PRETRAIN_FILE = "pretrain.txt"
END_OF_TEXT = "<|endoftext|>"


def make_instruction_suite(
    *,
    out: str,
    train: int = 4000,
    validation: int = 200,
    test: int = 400,
    seed: int = 123,
    families: list[str] | None = None,
    prompt_style: str = "alpaca",
    preferences: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a generated instruction suite with exactly checkable answers: train/validation/test splits and more.

    `OUT/{train,validation,test}.jsonl` hold `{"instruction", "input", "output", "family", "key"}`
    records (a split asked to be empty is not written); `finetune-instruct --data OUT` reads them as
    they are. `OUT/pretrain.txt` holds the training split rendered in `prompt_style` (prompt and
    response), each example followed directly by `<|endoftext|>` (the token stream of fine-tuning),
    for pretraining on the domain without a held-out example. `OUT/suite.json` records the seed, the
    sizes, the examples of each family per split and the held-out rule. The folder appears only once
    complete.

    Args:
        out: Folder to write.
        train: Training examples (balanced across the families).
        validation: Validation examples.
        test: Test examples.
        seed: Seed of the draws and the row order (the held-out partition of keys is the same for every seed).
        families: Families to include (default: all): reverse_words, sort_numbers, min_max, count_words,
            uppercase, extract_field, kv_format, pick_item, repeat_word, dedupe_words.
        prompt_style: Prompt style of pretrain.txt: alpaca or phi3 (use the one you will fine-tune with).
        preferences: Also write preference pairs for `finetune-dpo --data OUT`: every record gets `chosen`
            (its output) and `rejected` (a near miss of the same problem, `instruction_suite.near_miss`).
        overwrite: Replace an existing, non-empty `out`.

    Returns:
        The output folder.
    """
    if train < 1:
        raise ValueError(f"--train must be >= 1, got {train}")
    if prompt_style not in TEMPLATE_STYLES:
        raise ValueError(f"--prompt-style must be one of {TEMPLATE_STYLES}, got {prompt_style!r}")
    check_output_dir(out, overwrite)
    suite = build_instruction_suite(train, validation, test, seed=seed, families=families)
    if preferences:
        with quiet_progress():
            suite = suite.map(lambda row: {"chosen": row["output"], "rejected": near_miss(row)})
    counts = family_counts(suite)
    record = {
        "seed": seed,
        "sizes": {split: len(part) for split, part in suite.items()},
        "columns": list(COLUMNS) + (["chosen", "rejected"] if preferences else []),
        "families": {
            name: {
                **per_split,
                "held_out_combination": HELD_OUT_COMBINATIONS[name][0] if name in HELD_OUT_COMBINATIONS else None,
            }
            for name, per_split in counts.items()
        },
        "held_out_rule": HELD_OUT_RULE,
        "preferences": (
            "chosen: the output; rejected: a near miss of the same problem (hf_scratchgpt.data.instruction_suite"
            ".near_miss)"
            if preferences
            else None
        ),
        "pretrain": {
            "file": PRETRAIN_FILE,
            "examples": len(suite["train"]),
            "format": f"the train split, each record rendered in the {prompt_style} style (prompt + response) "
            f"+ {END_OF_TEXT}",
            "prompt_style": prompt_style,
        },
    }
    with atomic_output_dir(out, overwrite) as tmp:
        for split, part in suite.items():
            if len(part):
                lines = (json.dumps(row, ensure_ascii=False) + "\n" for row in part)
                (tmp / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
        texts = (render(row, prompt_style)[1] + END_OF_TEXT for row in suite["train"])
        (tmp / PRETRAIN_FILE).write_text("".join(texts), encoding="utf-8")
        (tmp / SUITE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    sizes = " / ".join(str(n) for n in record["sizes"].values())
    print(f"train / validation / test: {sizes} examples of {len(counts)} families (seed {seed}) -> {out}")
    return Path(out)
