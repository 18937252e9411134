"""The shared training run: every training verb is a `Task` run by `run_training`.

Works the same under `python -m hf_scratchgpt`, `accelerate launch -m hf_scratchgpt` and `torchrun`;
on a machine without CUDA the processes talk over gloo (`Accelerator(cpu=True)`).

The run folder `OUT` (`--out`, default `runs/<name>`):
- Everything is validated first (options, trackers, data, tokenizer, model, loaders): a failure
  leaves no folder behind. The task prepares its files in a staging folder that becomes OUT in one
  rename, replacing an old OUT only then (`--overwrite`).
- `OUT/config.yaml` (the effective configuration, printed once validated), `data_provenance.json`,
  `metrics.jsonl` (+ `logs/` for trackers), `checkpoints/step-N/` (atomic, exact resume),
  `best/` (with early stopping), `final/` (the model folder with its card and, for a task with a
  final evaluation, `eval_results.json`) and `loss.png`.
- `--resume auto` continues the run in OUT from its saved configuration; a run that fails before
  its first checkpoint is removed; Ctrl-C saves a checkpoint at the next optimizer step and prints
  the command that resumes.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import accelerate.utils as acc_utils
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader, Subset

from ..cards import hardware, template_fields
from ..data.batching import LengthGroupedSampler
from ..folders import check_output_dir, save_model_files, write_model_folder
from ..hub import HubError, check_push_access, push_folder
from .checkpoint import STATE_FILE, TrainState, complete_checkpoints, find_resume_checkpoint
from .config import CONFIG_FILE, TrainConfig
from .loop import LoopParts, LoopSettings, StopRequested, evaluation_totals, lr_lambda, param_groups, train
from .task import Task, TaskSetup
from .tracking import JSONLTracker, plot_losses, read_metrics, truncate_metrics

TRACKERS = ("tensorboard", "trackio", "wandb", "mlflow", "comet_ml", "aim")
RESULTS_FILE = "eval_results.json"  # the final evaluation of a task that has one, in final/
PLOT_FILE = "loss.png"  # the loss curves, in the run folder and in final/


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run after a checkpoint; the message says how to continue."""


def check_trackers(names: list[str]) -> None:
    """Every tracker asked for with --log-with must be installed (a clear error, before any work)."""
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"log_with: unknown tracker {name!r}; choose from {sorted(TRACKERS)}")
        if not getattr(acc_utils, f"is_{name}_available")():
            raise ValueError(f"log_with: {name} is not installed (pip install 'hf-scratchgpt[trackers]' or {name})")


def _plan(cfg: TrainConfig) -> tuple[Path, Path | None, bool]:
    """The run folder, the checkpoint to resume (or None) and whether an existing OUT is replaced."""
    out = cfg.out_dir
    ckpt = find_resume_checkpoint(cfg.resume, out / "checkpoints")
    if ckpt is not None:
        return out, ckpt, False
    exists = out.is_dir() and any(out.iterdir())
    if exists and not cfg.overwrite:
        if cfg.resume is None:
            raise FileExistsError(
                f"output folder {out} already exists and is not empty; pass --overwrite to replace it "
                f"or --resume auto to continue it"
            )
        if not (out / CONFIG_FILE).is_file():
            raise FileExistsError(f"cannot resume {out}: it is not a run folder (no {CONFIG_FILE})")
    check_output_dir(out, overwrite=True)  # a folder (or nothing), in a writable place
    return out, None, exists


def _loader(ds: Any, cfg: TrainConfig, shuffle: bool, collate_fn: Any, lengths: Any = None) -> DataLoader:
    """A loader with its own generator: an iterator draws a base seed when it starts, and from the
    global RNG that draw would shift dropout masks when a run resumes mid-epoch. In book mode the
    draws come from the global RNG, as in the book. Given `lengths`, a shuffled loader groups them."""
    sampler = LengthGroupedSampler(lengths, cfg.batch_size, cfg.seed) if shuffle and lengths is not None else None
    return DataLoader(
        ds.with_format("torch") if hasattr(ds, "with_format") else ds,
        batch_size=cfg.batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        drop_last=shuffle,
        collate_fn=collate_fn,
        generator=None if cfg.book_mode else torch.Generator().manual_seed(cfg.seed),
    )


@contextlib.contextmanager
def _stop_on_interrupt() -> Iterator[threading.Event]:
    """The first Ctrl-C asks the loop to stop after a checkpoint; a second one stops at once."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return

    def handler(signum: int, frame: Any) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
        print("\nstopping after this optimizer step, with a checkpoint (Ctrl-C again: stop at once)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def _install(staging: Path, out: Path, resumed: bool, replace: bool) -> None:
    """Make the staging folder OUT (replacing an old OUT), or, resuming, move its files into OUT."""
    if resumed:
        for item in staging.iterdir():
            item.replace(out / item.name)
        staging.rmdir()
        return
    if replace:
        shutil.rmtree(out)
    elif out.is_dir():
        out.rmdir()  # empty
    staging.replace(out)


def _flat(values: dict) -> dict:
    return {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in values.items()}


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _fmt(key: str, value: Any) -> str:
    return f"{value:.{2 if key.endswith('perplexity') else 4}f}" if isinstance(value, float) else "n/a"


def run_training(task: Task) -> Path:
    """Run `task` from its config; returns `OUT/final`.

    Raises (before any folder is written):
        FileNotFoundError, ValueError, FileExistsError, NotADirectoryError, PermissionError: bad
            options, data, tokenizer, model or output folder, each with one line naming the problem.
        RunInterrupted: Ctrl-C; a checkpoint was saved and the message gives the resume command.
    """
    cfg = task.config
    cfg.validate()
    if cfg.group_by_length and not task.rows_vary_in_length:
        raise ValueError(
            f"group_by_length: the rows `scratchgpt {cfg.VERB}` trains on all have one length; drop --group-by-length"
        )
    check_trackers(cfg.log_with)
    template_fields(task.card_template)  # the final folder's card can be written (checked before training)
    if cfg.push_to_hub is not None:  # a push that cannot work fails now, not after the training
        check_push_access(cfg.push_to_hub)
    out, ckpt, replace = _plan(cfg)
    name = out.name
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=[JSONLTracker(name, out), *cfg.log_with],
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=not cfg.book_mode),
        step_scheduler_with_optimizer=False,
    )
    if cfg.book_mode and acc.num_processes > 1:
        raise ValueError(f"book_mode is the book's single-process loop; this run has {acc.num_processes} processes")
    main = acc.is_main_process
    staging = out.parent / f".{out.name}.staging"
    if main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    acc.wait_for_everyone()
    try:
        set_seed(cfg.seed)
        setup = task.setup(acc, staging, ckpt)
        lengths = None
        if cfg.group_by_length:
            if setup.train_lengths is None:
                raise TypeError(f"{type(task).__name__}.setup gave no train_lengths for group_by_length")
            lengths = setup.train_lengths()
        train_loader = _loader(setup.train, cfg, True, setup.collate_fn, lengths)
        if len(train_loader) == 0:
            raise ValueError(
                f"the training split has {len(setup.train)} examples, fewer than one batch of "
                f"{cfg.batch_size}; lower --batch-size or add data"
            )
        if main:
            record = yaml.safe_dump(cfg.run_record(), sort_keys=False)
            (staging / CONFIG_FILE).write_text(record, encoding="utf-8")
            (staging / "data_provenance.json").write_text(json.dumps(setup.provenance, indent=2), encoding="utf-8")
            print("effective configuration:\n" + record.rstrip())
            if cfg.resume is not None and ckpt is None:
                print(f"nothing to resume in {out}: starting the run from step 0")
            _install(staging, out, ckpt is not None, replace)
        acc.wait_for_everyone()
    except BaseException:
        if main:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        final = _train_and_save(task, cfg, acc, setup, train_loader, out, ckpt)
    except RunInterrupted:
        raise
    except BaseException:
        if main and ckpt is None and not complete_checkpoints(out / "checkpoints"):
            shutil.rmtree(out, ignore_errors=True)  # nothing resumable: leave no folder that blocks a re-run
        elif main:
            hint = f"scratchgpt {cfg.VERB} --out {out} --resume auto"
            print(f"the run stopped; continue it with: {hint}", file=sys.stderr)
        raise
    if main and cfg.push_to_hub is not None:
        _push_finished_run(out, cfg)
    return final


def _push_finished_run(out: Path, cfg: TrainConfig) -> None:
    """`--push-to-hub`: push the finished run; a failure says that the run itself is complete."""
    try:
        pushed = push_folder(out, cfg.push_to_hub, private=cfg.hub_private)
    except (ValueError, OSError) as err:
        raise HubError(
            f"the run finished ({out / 'final'}), but the push failed: {err}; push it again with: "
            f"scratchgpt push {out} {cfg.push_to_hub}"
        ) from None
    print(f"pushed -> {pushed.url}" if pushed.changed else f"{pushed.url} already holds this run: no commit")


def _train_and_save(
    task: Task, cfg: TrainConfig, acc: Accelerator, setup: TaskSetup, train_loader: DataLoader, out: Path, ckpt: Any
) -> Path:
    model, tok = setup.model, setup.tokenizer
    if cfg.gradient_checkpointing:  # transformers 5's name of gradient_checkpointing_enable
        model.activation_checkpointing_enable({"use_reentrant": False})
    groups = param_groups(model, cfg.weight_decay, decay_all=cfg.book_mode)
    # fused AdamW: one kernel for every parameter (on CPU several times faster than the default for-each
    # kernels); book mode keeps the book's default implementation
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), fused=not cfg.book_mode)
    # the book evaluates on the first batches of its shuffled training loader, drawing a new order each time
    eval_loaders = {"train": _loader(setup.train, cfg, cfg.book_mode, setup.collate_fn)}
    eval_loaders.update({k: _loader(v, cfg, False, setup.collate_fn) for k, v in setup.evaluation.items()})
    final_loaders = {}
    if task.final_evaluation:  # the final weights on whole splits: train (in order), evaluation, test
        limit = cfg.final_train_examples
        read = setup.train
        if limit is not None and len(read) > limit:
            read = read.select(range(limit)) if hasattr(read, "select") else Subset(read, range(limit))
        final_loaders = {"train": _loader(read, cfg, False, setup.collate_fn)}
        final_loaders.update({k: _loader(v, cfg, False, setup.collate_fn) for k, v in setup.evaluation.items()})
        final_loaders.update({k: _loader(v, cfg, False, setup.collate_fn) for k, v in setup.test.items()})
    steps_per_epoch = math.ceil(math.ceil(len(train_loader) / acc.num_processes) / cfg.grad_accum)
    max_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch) if cfg.max_steps is not None else cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.warmup_steps, max_steps, cfg.lr_schedule, cfg.min_lr_ratio)
    )
    model, optimizer, train_loader, scheduler = acc.prepare(model, optimizer, train_loader, scheduler)
    eval_loaders = {k: acc.prepare_data_loader(v) for k, v in eval_loaders.items()}
    final_loaders = {k: acc.prepare_data_loader(v) for k, v in final_loaders.items()}

    state = TrainState()
    if ckpt is not None:
        acc.load_state(str(ckpt / "accelerate"))
        state = TrainState.from_file(ckpt / STATE_FILE)
        if acc.is_main_process:
            truncate_metrics(out / "metrics.jsonl", state.step)  # drop what was logged after the checkpoint
            print(f"resuming from {ckpt} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    acc.init_trackers(out.name, config=_flat(cfg.run_record()))
    global_batch = cfg.batch_size * cfg.grad_accum * acc.num_processes
    if acc.is_main_process:
        print(
            f"{acc.unwrap_model(model).num_parameters():,} parameters, {len(setup.train):,} training examples, "
            f"global batch {global_batch}, {max_steps} step{'s' if max_steps != 1 else ''}, "
            f"{acc.num_processes} process(es) on {acc.device}"
        )

    def write_folder(path: Path) -> None:
        unwrapped = acc.unwrap_model(model)
        exported = task.export(unwrapped)
        save_model_files(path, exported, tok, is_main_process=acc.is_main_process, save_function=acc.save)
        if acc.is_main_process:
            task.write_extras(unwrapped, path)

    def save_best(step: int, value: float) -> None:
        weights = f"the best {cfg.early_stopping_metric} ({value:.4f}), at step {step}"
        card = {"name": out.name, "weights": weights, "provenance": "The best weights so far of this run."}
        best = acc.unwrap_model(model)
        write_model_folder(
            out / "best", task.export(best), tok, command=cfg.VERB, card_fields=card,
            card_meta={"license": cfg.license}, overwrite=True,
            extras=lambda folder: task.write_extras(best, folder),
        )  # fmt: skip

    settings = LoopSettings(
        max_steps=max_steps,
        epochs=epochs,
        grad_accum=cfg.grad_accum,
        clip_grad=cfg.clip_grad,
        eval_every=cfg.eval_every,
        eval_offset=1 if cfg.book_mode else 0,
        eval_batches=cfg.eval_batches,
        save_every=cfg.save_every,
        keep_last=cfg.keep_last,
        early_stopping_patience=cfg.early_stopping_patience,
        early_stopping_metric=cfg.early_stopping_metric,
        early_stopping_mode=cfg.early_stopping_mode,
    )
    with _stop_on_interrupt() as requested:
        parts = LoopParts(
            acc, model, optimizer, scheduler, train_loader, eval_loaders, out / "checkpoints", write_folder,
            save_best=save_best, stop_requested=requested.is_set,
        )  # fmt: skip
        try:
            if state.step >= max_steps and (out / "metrics.jsonl").is_file():  # a finished run: rewrite final/
                if acc.is_main_process:
                    print(
                        f"the run already reached step {state.step} of {max_steps}: final/ and the final evaluation "
                        f"are written again from that checkpoint (a larger --max-steps trains on)"
                    )
                metrics = [r for r in read_metrics(out / "metrics.jsonl") if r.get("step") == state.step][-1:]
                metrics = metrics[0] if metrics else train(parts, task, settings, state)
            else:
                metrics = train(parts, task, settings, state)
        except StopRequested as stop:
            acc.end_training()
            raise RunInterrupted(
                f"interrupted: a checkpoint of step {stop.step} is in {stop.checkpoint}; "
                f"continue with: scratchgpt {cfg.VERB} --out {out} --resume auto"
            ) from None

    final = out / "final"
    final_model = acc.unwrap_model(model)
    if cfg.early_stopping_patience is not None and (out / "best" / "config.json").is_file():
        task.restore(final_model, out / "best")  # early stopping keeps the best weights (on every process)
        if acc.is_main_process:
            best = f"{cfg.early_stopping_metric} {state.best_metric:.4f}"
            print(f"final: the best weights, of step {state.best_step} ({best})")
    results = None
    if task.final_evaluation:
        totals = {k: evaluation_totals(acc, model, v, task, None) for k, v in final_loaders.items()}
        results = task.report(totals)
        if "train" in results and len(read) < len(setup.train):
            results["train"]["evaluated_examples"] = len(read)  # the first ones, in order
        if acc.is_main_process:
            results = task.final_outputs(final_model, out, results)
        acc.wait_for_everyone()
    if acc.is_main_process:
        plot = plot_losses(out / "metrics.jsonl", out / PLOT_FILE, metric=task.plot_metric)
        fields = {
            **{k: _fmt(k, v) for k, v in metrics.items() if isinstance(v, float)},  # the last evaluation
            "name": out.name,
            "steps": state.step,
            "tokens_seen": f"{state.tokens_seen:,}",
            "global_batch": global_batch,
            "batch_order": "grouped by length, shuffled" if cfg.group_by_length else "shuffled",
            "num_processes": acc.num_processes,
            **{k: getattr(cfg, k) for k in ("lr", "lr_schedule", "warmup_steps", "weight_decay")},
            "clip_grad": "none" if cfg.clip_grad is None else cfg.clip_grad,
            **{k: getattr(cfg, k) for k in ("mixed_precision", "seed")},
            "hardware": f"{hardware()}, {acc.num_processes} process(es)",
            "train_time": _duration(state.train_seconds),
            "loss_plot": f"![losses]({PLOT_FILE})" if plot else "No evaluation was logged, so there is no plot.",
            **task.card_fields(metrics, results),
        }

        def extras(folder: Path) -> None:
            task.write_extras(final_model, folder)
            if results is not None:
                (folder / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            if plot:
                shutil.copyfile(plot, folder / PLOT_FILE)

        meta = {"license": cfg.license, "model_name": out.name, **task.card_metadata(metrics, results)}
        write_model_folder(
            final, task.export(final_model), tok, command=cfg.VERB, template=task.card_template,
            card_fields=fields, card_meta=meta, overwrite=True, extras=extras,
        )  # fmt: skip
        print(f"final: {task.summary(metrics, results)}")
        print(f"model -> {final}" + (f", plot -> {plot}" if plot else ""))
    acc.wait_for_everyone()
    acc.end_training()  # last: it also ends the process group
    return final
