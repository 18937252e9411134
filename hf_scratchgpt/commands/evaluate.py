"""The `evaluate` family: a saved model's perplexity and bits per byte on local text, and lm-eval tasks."""

from __future__ import annotations

import json
import os
from typing import Any

import datasets
import torch
from transformers import AutoModelForCausalLM

from ..data.sources import load_documents
from ..evaluation import lm_eval_summary, lm_eval_table, perplexity, resolve_tasks, run_lm_eval
from ..folders import atomic_output_file, check_output_file
from ..paths import model_folder_or_hub
from ..tokenization import load_tokenizer


def evaluate(
    model_dir: str,
    *,
    data: str | None = None,
    text_field: str = "text",
    stride: int | None = None,
    task: list[str] | None = None,
    limit: int | None = None,
    num_fewshot: int | None = None,
    batch_size: int = 8,
    tokenizer: str | None = None,
    device: str | None = None,
    out: str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Score a saved causal LM: perplexity and bits per byte on local text, and lm-eval tasks.

    Perplexity scores every token once, in windows of the model's context length; bits per byte is
    the total loss in nats / ln 2 / the UTF-8 bytes of the text. lm-eval tasks need the extra
    `pip install 'hf_scratchgpt[lm-eval]'`.

    Args:
        model_dir: Folder with the model and its tokenizer (or a Hub id when online).
        data: Text to score: a .txt or .md file (one document), a .json, .jsonl, .csv or .parquet file
            (one document per record, in --text-field), or a folder of such files.
        text_field: Field holding the text in JSON, CSV and Parquet records.
        stride: Tokens newly scored by each window after a document's first (default: half the context
            length; the context length gives disjoint windows, as lm-eval's rolling loglikelihood).
        task: lm-eval tasks: names (`lm-eval ls tasks`), task YAML files, or folders of them (give a local
            dataset's data_files as absolute paths); needs the extra `pip install 'hf_scratchgpt[lm-eval]'`.
        limit: Documents per lm-eval task (default: all).
        num_fewshot: Examples in each lm-eval prompt (default: each task's own).
        batch_size: Windows (perplexity) or requests (lm-eval) per forward pass.
        tokenizer: Tokenizer to use instead of the model folder's own.
        device: cpu, cuda, cuda:1, ... (default: cuda when available, else cpu).
        out: Also write the results to this JSON file.
        overwrite: Replace an existing --out file.

    Returns:
        The results: `perplexity` and/or `lm_eval` (what --out holds).
    """
    if data is None and not task:
        raise ValueError("nothing to evaluate: give --data TEXT_FILE and/or --task TASK")
    if out is not None:
        check_output_file(out, overwrite)
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    where = model_folder_or_hub(model_dir)
    docs: list[str] = []
    if data is not None:
        docs = _read_texts(data, text_field)
        if not docs:
            raise ValueError(f"{data}: no text to score (every document is empty)")
    names, manager = resolve_tasks(task) if task else ([], None)  # before loading: a bad task fails fast
    target = _device(device)
    tok = load_tokenizer(tokenizer if tokenizer is not None else where)
    model = AutoModelForCausalLM.from_pretrained(where).eval().to(target)
    results: dict[str, Any] = {"model": model_dir}
    if docs:
        scores = perplexity(model, tok, docs, stride=stride, batch_size=batch_size)
        results["perplexity"] = {"data": data, **scores.to_dict()}
        print(_perplexity_table(model_dir, data or "", results["perplexity"]))
    if names:
        raw = run_lm_eval(
            model, names, tokenizer=tok, batch_size=batch_size, limit=limit, num_fewshot=num_fewshot,
            task_manager=manager,
        )  # fmt: skip
        if raw is None:  # lm-eval answers None on the ranks other than the first of a distributed run
            return results
        settings = {"tasks": list(task or []), "limit": limit, "num_fewshot": num_fewshot, "batch_size": batch_size}
        results["lm_eval"] = {**lm_eval_summary(raw), "settings": settings}
        if docs:
            print()
        print(f"lm-eval {results['lm_eval']['lm_eval_version']} on {model_dir} (max length {raw.get('max_length')})")
        print(lm_eval_table(raw))
    if out is not None:
        with atomic_output_file(out, overwrite) as tmp:
            tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"results -> {out}")
    return results


def _read_texts(data: str, text_field: str) -> list[str]:
    """The non-empty documents of `data`, read without the datasets library's progress bars."""
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        return [t for t in load_documents(data, text_field=text_field)["text"] if t]
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device: not a device: {device!r} (cpu, cuda, cuda:1, mps, ...)") from None


def _perplexity_table(model_dir: str, data: str, scores: dict[str, Any]) -> str:
    rows = [
        ("documents", f"{scores['documents']:,}"),
        ("bytes", f"{scores['bytes']:,}"),
        ("tokens scored", f"{scores['tokens']:,}"),
        ("windows", f"{scores['windows']:,} (context {scores['context_length']}, stride {scores['stride']})"),
        ("loss", f"{scores['loss']:.4f} nats per token"),
        ("perplexity", f"{scores['perplexity']:.4f}"),
        ("bits per byte", f"{scores['bits_per_byte']:.4f}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{model_dir} on {os.fspath(data)}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    return "\n".join(lines)


__all__ = ["evaluate"]
