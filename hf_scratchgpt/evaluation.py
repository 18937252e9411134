"""Evaluation of a causal LM: perplexity and bits per byte on local text, and EleutherAI's lm-eval tasks.

Perplexity (`perplexity`) scores every token of each document once, in sliding windows of the
model's context length. The first window starts with the beginning-of-text token (the tokenizer's
bos, else its eos, `<|endoftext|>` for GPT-2) so that the first token is predicted too, and scores
all its tokens; every later window moves `stride` tokens forward and scores only its last `stride`
tokens, the ones no earlier window scored, so each of them sees at least `context_length - stride`
previous tokens. The last window ends at the last token (it scores what is left, with a full
context). `stride = context_length` makes the windows disjoint, exactly lm-eval's
`loglikelihood_rolling` (its wikitext-style `word_perplexity`, `byte_perplexity` and `bits_per_byte`);
the default, half the context, gives every token at least half a context of history and costs twice
as many forward passes.

Bits per byte = total negative log-likelihood in nats / ln 2 / number of UTF-8 bytes of the text, a
figure that does not depend on the tokenizer (perplexity per token does).

lm-eval (`run_lm_eval`, the optional extra `lm-eval`) runs its tasks, named or defined in local task
YAML files or folders, on a model folder (its HF backend, with `trust_remote_code=True`, so the
folder's own code runs) or on a model object in this process (`HFLM(pretrained=model)`). lm-eval
reads the context length from the config's `max_position_embeddings`, which ScratchGPT maps to
`context_length`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .training.pretrain import causal_lm_stats

LM_EVAL_EXTRA = "pip install 'hf_scratchgpt[lm-eval]'"
TASK_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class PerplexityResult:
    """The scores of a model on a text.

    Attributes:
        nll: Total negative log-likelihood of the scored tokens, in nats.
        tokens: Tokens scored.
        bytes: UTF-8 bytes of the text (all documents).
        documents: Documents scored.
        windows: Forward passes (windows) it took.
        context_length: Length of the windows.
        stride: Step between windows (tokens newly scored by each window after a document's first).
    """

    nll: float
    tokens: int
    bytes: int
    documents: int
    windows: int
    context_length: int
    stride: int

    @property
    def loss(self) -> float:
        """Mean negative log-likelihood per token (nats)."""
        return self.nll / self.tokens

    @property
    def perplexity(self) -> float:
        """exp(loss), per token."""
        return math.exp(self.loss) if self.loss < 700 else math.inf

    @property
    def bits_per_byte(self) -> float:
        """nll / ln 2 / bytes."""
        return self.nll / math.log(2) / self.bytes

    def to_dict(self) -> dict[str, Any]:
        """The fields and the derived figures (loss, perplexity, bits_per_byte), JSON-ready."""
        return {
            **asdict(self),
            "loss": self.loss,
            "perplexity": self.perplexity,
            "bits_per_byte": self.bits_per_byte,
        }


def score_windows(ids: Sequence[int], context_length: int, stride: int) -> Iterator[tuple[list[int], list[int]]]:
    """The windows of one document: `(input_ids, targets)` pairs, `-100` marking targets not scored.

    `ids` starts with the token the first prediction is conditioned on (the beginning-of-text
    token); every later id is predicted exactly once (see the module docstring for the layout).

    Args:
        ids: The document's token ids, after its start token.
        context_length: Longest window.
        stride: Tokens newly scored by each window after the first (1 to `context_length`).
    """
    predictions = len(ids) - 1
    if predictions <= 0:
        return
    end = min(context_length, predictions)
    yield list(ids[:end]), list(ids[1 : end + 1])
    while end < predictions:
        new = min(stride, predictions - end)
        end += new
        inputs = list(ids[end - context_length : end])
        targets = [-100] * (context_length - new) + list(ids[end - new + 1 : end + 1])
        yield inputs, targets


def _start_token(tokenizer: Any) -> int | None:
    """The token a document's first prediction is conditioned on: bos, else eos (as lm-eval's prefix token)."""
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


@torch.no_grad()
def perplexity(
    model: nn.Module,
    tokenizer: Any,
    text: str | Sequence[str],
    *,
    stride: int | None = None,
    batch_size: int = 8,
) -> PerplexityResult:
    """Perplexity and bits per byte of `text` under `model`, in sliding windows of its context length.

    Each document is tokenized without special tokens and preceded by the beginning-of-text token
    (bos, else eos; without either its first token is not scored); see the module docstring for the
    windows.

    Args:
        model: A transformers causal LM (its config's `max_position_embeddings` is the context length).
        tokenizer: The model's tokenizer.
        text: One text, or several documents scored one by one (empty ones are skipped).
        stride: Tokens scored by each window after a document's first, 1 to the context length
            (default: half the context length; the context length reproduces lm-eval's rolling windows).
        batch_size: Windows per forward pass.

    Raises:
        ValueError: A stride or batch size out of range, or a text with no token to score.
    """
    docs = [text] if isinstance(text, str) else list(text)
    context = int(model.config.max_position_embeddings)
    stride = max(1, context // 2) if stride is None else stride
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= context:
        raise ValueError(f"stride must be an integer from 1 to the context length {context}, got {stride!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    start = _start_token(tokenizer)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, tokens, n_bytes, n_docs, n_windows = 0.0, 0, 0, 0, 0
    batch: list[tuple[list[int], list[int]]] = []

    def flush() -> None:
        nonlocal nll, tokens, n_windows
        inputs = torch.tensor([w[0] for w in batch], dtype=torch.long, device=device)
        targets = torch.tensor([w[1] for w in batch], dtype=torch.long, device=device)
        stats = causal_lm_stats(model, {"input_ids": inputs, "shift_labels": targets, "use_cache": False})
        nll += float(stats["loss_sum"].double().sum())
        tokens += int(stats["targets"].sum())
        n_windows += len(batch)
        batch.clear()

    try:
        for doc in docs:
            if not doc:
                continue
            ids = tokenizer(doc, add_special_tokens=False, verbose=False)["input_ids"]
            ids = ids if start is None else [start, *ids]
            if len(ids) < 2:
                continue
            n_docs += 1
            n_bytes += len(doc.encode("utf-8"))
            for window in score_windows(ids, context, stride):
                if batch and (len(batch) == batch_size or len(batch[0][0]) != len(window[0])):
                    flush()
                batch.append(window)
        if batch:
            flush()
    finally:
        model.train(was_training)
    if tokens == 0:
        raise ValueError("the text has no token to score (it is empty)")
    return PerplexityResult(nll, tokens, n_bytes, n_docs, n_windows, context, stride)


# ----------------------------------------------------------------------------- lm-eval


def import_lm_eval() -> Any:
    """The `lm_eval` module.

    Raises:
        ImportError: lm-eval is not installed; the message names the extra that installs it.
    """
    try:
        import lm_eval
        from lm_eval.tasks import TaskManager  # noqa: F401 (the API used here, checked now)
    except ImportError as err:
        raise ImportError(f"lm-eval tasks need the optional extra: {LM_EVAL_EXTRA} ({err})") from None
    return lm_eval


def is_task_path(task: str) -> bool:
    """Whether `task` names a task YAML file or folder rather than a task of lm-eval (whose names have no `/`)."""
    return task.lower().endswith(TASK_SUFFIXES) or "/" in task or os.sep in task or Path(task).expanduser().exists()


def resolve_tasks(tasks: Sequence[str]) -> tuple[list[str], Any]:
    """The task names to run and the lm-eval `TaskManager` that knows them.

    A task is a name of lm-eval's (`lm-eval ls tasks`), a task YAML file (its task or group), or a
    folder of task YAML files (every task in it, not its groups or tags). lm-eval's own tasks are
    indexed only when a name is not found in the given files and folders (indexing them takes a while).

    Raises:
        ImportError: lm-eval is not installed.
        FileNotFoundError: A task file or folder that does not exist.
        ValueError: No task, an unknown task name, or a file or folder that defines no task.
    """
    import_lm_eval()
    from lm_eval.tasks import TaskManager

    if not tasks:
        raise ValueError("no lm-eval task given")
    paths: list[Path] = []
    for task in tasks:
        if is_task_path(task):
            path = Path(task).expanduser().resolve()
            if not path.exists():
                raise FileNotFoundError(f"task file or folder not found: {task}")
            paths.append(path)
    folders = sorted({str(p if p.is_dir() else p.parent) for p in paths})
    manager = TaskManager(include_path=folders, include_defaults=False) if folders else None
    names = [t for t in tasks if not is_task_path(t)]
    if names and (manager is None or any(n not in manager.all_tasks for n in names)):
        manager = TaskManager(include_path=folders or None, include_defaults=True)
    assert manager is not None
    for name in names:
        if name not in manager.all_tasks:
            raise ValueError(
                f"unknown lm-eval task {name!r}: not a task, group or tag of lm-eval (`lm-eval ls tasks` lists them), "
                "nor a task YAML file or folder"
            )
    selected: list[str] = []
    for task in tasks:
        found = _tasks_in(manager, Path(task).expanduser().resolve()) if is_task_path(task) else [task]
        if not found:
            raise ValueError(f"{task}: defines no lm-eval task (a YAML with a `task:` or `group:` key)")
        selected += [t for t in found if t not in selected]
    return selected, manager


def _tasks_in(manager: Any, path: Path) -> list[str]:
    """The names an indexed YAML file defines (its task or group), or the tasks of a folder's YAML files."""
    found = []
    for name, entry in manager.task_index.items():
        where = getattr(entry, "yaml_path", None)
        if where is None:
            continue
        where = Path(where).resolve()
        if path.is_dir() and path in where.parents and name in manager.all_subtasks:
            found.append(name)
        elif path.is_file() and where == path and name not in manager.all_tags:
            found.append(name)
    return sorted(found)


def run_lm_eval(
    model: str | os.PathLike | nn.Module,
    tasks: Sequence[str],
    *,
    tokenizer: Any = None,
    batch_size: int = 8,
    limit: int | None = None,
    num_fewshot: int | None = None,
    device: str | None = None,
    log_samples: bool = False,
    task_manager: Any = None,
) -> dict[str, Any]:
    """Run lm-eval tasks on a model folder (its HF backend, trust_remote_code) or on a model object.

    Args:
        model: A model folder or Hub id (loaded by lm-eval's `hf` backend with `trust_remote_code=True`),
            or a transformers causal LM (wrapped in lm-eval's `HFLM`, in this process).
        tasks: lm-eval task names, task YAML files or folders of them (see `resolve_tasks`).
        tokenizer: The tokenizer (an object, or a folder for a model folder); required with a model
            object; a model folder defaults to its own.
        batch_size: Requests per forward pass.
        limit: Documents per task (default: all).
        num_fewshot: Examples in each prompt (default: each task's own).
        device: Device of a model folder (default: cuda when available, else cpu); a model object stays where it is.
        log_samples: Keep each document's requests and responses under `samples`.
        task_manager: The `TaskManager` of `resolve_tasks(tasks)` when already resolved (`tasks` are then
            its names).

    Returns:
        lm-eval's results (`results`, `versions`, `n-shot`, `n-samples`, `max_length`, ...).

    Raises:
        ImportError: lm-eval is not installed (the message names the extra).
        ValueError: An unknown task, or a model object without a tokenizer.
        FileNotFoundError: A task file or folder that does not exist.
    """
    lm_eval = import_lm_eval()
    names, manager = (list(tasks), task_manager) if task_manager is not None else resolve_tasks(tasks)
    options: dict[str, Any] = {"limit": limit, "num_fewshot": num_fewshot, "log_samples": log_samples}
    if isinstance(model, (str, os.PathLike)):
        model_args: dict[str, Any] = {"pretrained": os.fspath(model), "trust_remote_code": True}
        if tokenizer is not None:
            model_args["tokenizer"] = os.fspath(tokenizer) if isinstance(tokenizer, os.PathLike) else tokenizer
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return lm_eval.simple_evaluate(
            model="hf",
            model_args=model_args,
            tasks=names,
            task_manager=manager,
            batch_size=batch_size,
            device=device,
            **options,
        )
    if tokenizer is None:
        raise ValueError("run_lm_eval on a model object needs its tokenizer (tokenizer=...)")
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    return lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=manager, **options)


def lm_eval_summary(results: dict[str, Any]) -> dict[str, Any]:
    """The JSON-ready part of lm-eval's results: metrics per task and group, versions, shots, sample counts."""
    keep = ("results", "groups", "group_subtasks", "versions", "n-shot", "n-samples", "higher_is_better", "max_length")
    summary = {k: results[k] for k in keep if k in results}
    summary["lm_eval_version"] = results.get("lm_eval_version") or _lm_eval_version()
    return _json_ready(summary)


def lm_eval_table(results: dict[str, Any]) -> str:
    """lm-eval's own tables (tasks, then groups if any), as its command line prints them."""
    from lm_eval.utils import make_table

    tables = [make_table(results)]
    if results.get("groups"):
        tables.append(make_table(results, "groups"))
    return "\n".join(tables)


def _lm_eval_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lm_eval")
    except PackageNotFoundError:
        return None


def _json_ready(value: Any) -> Any:
    """Plain JSON types: numpy and torch scalars become numbers, other objects their text."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_json_ready(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    return str(value)


__all__ = [
    "LM_EVAL_EXTRA",
    "PerplexityResult",
    "import_lm_eval",
    "lm_eval_summary",
    "lm_eval_table",
    "perplexity",
    "resolve_tasks",
    "run_lm_eval",
    "score_windows",
]
