"""`scratchgpt pretrain`: tokenizer + ScratchGPT trained on a corpus through accelerate (stage 6).

Works the same under `python -m hf_scratchgpt pretrain`, `accelerate launch -m hf_scratchgpt pretrain`
and `torchrun`; on a machine without CUDA the processes talk over gloo (`Accelerator(cpu=True)`).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed
from torch.utils.data import DataLoader
from transformers import AutoTokenizer, GenerationConfig

from ..cards import model_card_fields, render_card
from ..data.lm import prepare_lm_datasets
from ..data.sources import load_documents
from ..io_utils import atomic_output_dir, check_output_dir
from ..model import ScratchGPTConfig, ScratchGPTForCausalLM
from ..tokenization import load_tokenizer, train_bpe_tokenizer
from .checkpoint import STATE_FILE, TrainState, find_resume_checkpoint
from .config import PretrainConfig, resolve_config
from .loop import LoopSettings, causal_lm_loss, causal_lm_stats, lr_lambda, param_groups, train
from .tracking import JSONLTracker, plot_losses


def check_trackers(names: list[str]) -> None:
    """Every tracker asked for with --log-with must be installed (a clear error, before any work)."""
    import accelerate.utils as acc_utils

    known = {
        "tensorboard": "tensorboard",
        "trackio": "trackio",
        "wandb": "wandb",
        "mlflow": "mlflow",
        "comet_ml": "comet_ml",
        "aim": "aim",
    }
    for name in names:
        if name not in known:
            raise ValueError(f"log_with: unknown tracker {name!r}; choose from {sorted(known)}")
        if not getattr(acc_utils, f"is_{known[name]}_available")():
            raise ValueError(f"log_with: {name} is not installed (pip install 'hf-scratchgpt[trackers]' or {name})")


def _check_outputs(cfg: PretrainConfig, out: Path) -> Path | None:
    """Before any work: refuse an existing output without --overwrite/--resume; find the checkpoint."""
    ckpt = find_resume_checkpoint(cfg.resume, out / "checkpoints")
    check_output_dir(out, overwrite=cfg.overwrite or cfg.resume is not None)
    return ckpt


def _build_tokenizer(cfg: PretrainConfig, acc: Accelerator, out: Path, ckpt: Path | None) -> Any:
    if ckpt is not None:
        return AutoTokenizer.from_pretrained(ckpt)
    if cfg.tokenizer is not None:
        tok = load_tokenizer(cfg.tokenizer)
        if cfg.vocab_size is not None and cfg.vocab_size != len(tok):
            raise ValueError(
                f"tokenizer {cfg.tokenizer} has {len(tok):,} tokens but vocab_size is {cfg.vocab_size:,}; "
                f"drop --vocab-size or use a matching tokenizer"
            )
        return tok
    tok_dir = out / "tokenizer"
    with acc.main_process_first():
        if acc.is_main_process:
            docs = load_documents(cfg.data, text_field=cfg.text_field)
            tok = train_bpe_tokenizer((row["text"] for row in docs), vocab_size=cfg.vocab_size or 4096)
            with atomic_output_dir(tok_dir, overwrite=True) as tmp:
                tok.save_pretrained(tmp)
        else:
            tok = AutoTokenizer.from_pretrained(tok_dir)
    return tok


def _model_config(cfg: PretrainConfig, tok: Any) -> ScratchGPTConfig:
    overrides: dict[str, Any] = {
        "vocab_size": len(tok),
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "init_scheme": cfg.init_scheme,
        "fused_linear_cross_entropy": not cfg.book_mode,  # book mode keeps the book's arithmetic
        "eos_token_id": tok.eos_token_id,
        "bos_token_id": tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
        "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    }
    for name in ("context_length", "drop_rate", "qkv_bias"):
        if getattr(cfg, name) is not None:
            overrides[name] = getattr(cfg, name)
    config = ScratchGPTConfig.from_preset(cfg.preset, **overrides)
    config._attn_implementation = cfg.attn_implementation
    return config


def pretrain(cfg: PretrainConfig, print_fn: Any = print) -> Path:
    """Train a tokenizer (unless given) and a ScratchGPT model; returns `OUT/final`.

    Raises (before any training time is spent):
        FileNotFoundError: Missing corpus, tokenizer or checkpoint.
        FileExistsError: The output folder exists and neither overwrite nor resume was asked.
        PermissionError: The output folder cannot be written.
        ValueError: An empty corpus, a corpus shorter than one window, a tokenizer whose vocabulary
            does not match `vocab_size`, or an invalid option.
    """
    cfg.validate()
    check_trackers(cfg.log_with)
    out = cfg.out_dir
    ckpt = _check_outputs(cfg, out)
    acc = Accelerator(
        cpu=not torch.cuda.is_available(),
        mixed_precision=cfg.mixed_precision,
        gradient_accumulation_steps=cfg.grad_accum,
        log_with=[JSONLTracker(cfg.name, out), *cfg.log_with],
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=not cfg.book_mode),
        step_scheduler_with_optimizer=False,
    )
    if cfg.book_mode and acc.num_processes > 1:
        raise ValueError(f"book_mode is the book's single-process loop; this run has {acc.num_processes} processes")
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        effective = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
        print_fn("effective configuration:\n" + effective.rstrip())
        (out / "config.yaml").write_text(effective, encoding="utf-8")
    set_seed(cfg.seed)

    tok = _build_tokenizer(cfg, acc, out, ckpt)
    config = _model_config(cfg, tok)
    with acc.main_process_first():
        data = prepare_lm_datasets(
            cfg.data,
            tok,
            max_length=config.context_length,
            stride=cfg.stride,
            val_fraction=cfg.val_fraction,
            split_by=cfg.split_by,
            seed=cfg.seed,
            text_field=cfg.text_field,
            shifted_labels=cfg.book_mode,
        )
    if acc.is_main_process:
        (out / "data_provenance.json").write_text(json.dumps(data.provenance, indent=2), encoding="utf-8")

    set_seed(cfg.seed)  # the model's initial weights depend on the seed alone
    model = ScratchGPTForCausalLM(config)
    model.generation_config = GenerationConfig.from_model_config(config)
    groups = param_groups(model, cfg.weight_decay, decay_all=cfg.book_mode)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2))
    train_loader = _loader(data.train, cfg, shuffle=True)
    if len(train_loader) == 0:
        raise ValueError(
            f"the training split has {len(data.train)} windows, fewer than one batch of "
            f"{cfg.batch_size}; lower --batch-size or add data"
        )
    # the book evaluates on the first batches of its shuffled training loader, drawing a new order each time
    eval_loaders = {"train": _loader(data.train, cfg, shuffle=cfg.book_mode)}
    if data.validation is not None:
        eval_loaders["val"] = _loader(data.validation, cfg, shuffle=False)

    steps_per_epoch = math.ceil(math.ceil(len(train_loader) / acc.num_processes) / cfg.grad_accum)
    max_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    epochs = math.ceil(max_steps / steps_per_epoch) if cfg.max_steps is not None else cfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(cfg.warmup_steps, max_steps, cfg.lr_schedule, cfg.min_lr_ratio)
    )
    model, optimizer, train_loader, scheduler = acc.prepare(model, optimizer, train_loader, scheduler)
    eval_loaders = {k: acc.prepare_data_loader(v) for k, v in eval_loaders.items()}

    state = TrainState()
    if ckpt is not None:
        acc.load_state(str(ckpt / "accelerate"))
        state = TrainState.from_file(ckpt / STATE_FILE)
        if acc.is_main_process:
            print_fn(f"resuming from {ckpt} at step {state.step} (epoch {state.epoch}, batch {state.batch_in_epoch})")
    acc.init_trackers(cfg.name, config=_flat(cfg.to_dict()))

    global_batch = cfg.batch_size * cfg.grad_accum * acc.num_processes
    if acc.is_main_process:
        print_fn(
            f"{acc.unwrap_model(model).num_parameters():,} parameters, {len(data.train):,} training windows of "
            f"{config.context_length} tokens, global batch {global_batch}, {max_steps} steps, "
            f"{acc.num_processes} process(es) on {acc.device}"
        )

    def write_folder(path: Path) -> None:
        unwrapped = acc.unwrap_model(model)
        unwrapped.save_pretrained(path, is_main_process=acc.is_main_process, save_function=acc.save)
        tok.save_pretrained(path)

    def sample(unwrapped: Any) -> str:
        ids = tok(cfg.sample_prompt, return_tensors="pt").input_ids.to(acc.device)
        was_training = unwrapped.training
        unwrapped.eval()
        room = config.context_length - ids.shape[1]
        with torch.no_grad():
            new = unwrapped.generate(
                ids,
                max_new_tokens=max(1, min(cfg.sample_tokens, room)),
                do_sample=False,
                pad_token_id=config.pad_token_id,
            )
        unwrapped.train(was_training)
        return tok.decode(new[0, ids.shape[1] :], skip_special_tokens=True)

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
    )
    metrics = train(
        acc,
        model,
        optimizer,
        scheduler,
        train_loader,
        eval_loaders,
        settings,
        state,
        out / "checkpoints",
        write_folder,
        causal_lm_loss,
        causal_lm_stats,
        sample,
        print_fn,
    )

    final = out / "final"
    if acc.is_main_process:
        with atomic_output_dir(final, overwrite=True) as tmp:
            write_folder(tmp)
            fields = model_card_fields(acc.unwrap_model(model), final, "pretrain", "", "")
            fields.update(_card_training_fields(cfg, data.provenance, metrics, state, global_batch, acc.num_processes))
            (tmp / "README.md").write_text(render_card("pretrain", **fields), encoding="utf-8")
        plot = plot_losses(out / "metrics.jsonl", out / "loss.png")
        print_fn(
            f"final: train loss {metrics.get('train_loss', float('nan')):.4f}, "
            f"val loss {metrics.get('val_loss', float('nan')):.4f} "
            f"(perplexity {metrics.get('val_perplexity', float('nan')):.2f})"
        )
        print_fn(f"sample: {cfg.sample_prompt}{metrics.get('sample', '')}")
        print_fn(f"model -> {final}" + (f", plot -> {plot}" if plot else ""))
    acc.wait_for_everyone()
    acc.end_training()  # last: it also ends the process group
    return final


def _loader(ds: Any, cfg: PretrainConfig, shuffle: bool) -> DataLoader:
    """A loader with its own generator: an iterator draws a base seed when it starts, and from the
    global RNG that draw would shift dropout masks when a run resumes mid-epoch. In book mode the
    draws come from the global RNG, as in the book."""
    return DataLoader(
        ds.with_format("torch"),
        batch_size=cfg.batch_size,
        shuffle=shuffle,
        drop_last=shuffle,
        generator=None if cfg.book_mode else torch.Generator().manual_seed(cfg.seed),
    )


def _flat(values: dict) -> dict:
    return {k: (", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in values.items()}


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "n/a"


def _card_training_fields(
    cfg: PretrainConfig, provenance: dict, metrics: dict, state: TrainState, global_batch: int, num_processes: int
) -> dict:
    return {
        "data": ", ".join(cfg.data),
        "train_windows": provenance.get("train_windows", "n/a"),
        "validation_windows": provenance.get("validation_windows", "n/a"),
        "train_sha256": provenance.get("train_sha256", "n/a"),
        "steps": state.step,
        "tokens_seen": f"{state.tokens_seen:,}",
        "global_batch": global_batch,
        "lr": cfg.lr,
        "lr_schedule": cfg.lr_schedule,
        "warmup_steps": cfg.warmup_steps,
        "weight_decay": cfg.weight_decay,
        "clip_grad": cfg.clip_grad,
        "mixed_precision": cfg.mixed_precision,
        "num_processes": num_processes,
        "seed": cfg.seed,
        "train_loss": _fmt(metrics.get("train_loss")),
        "train_perplexity": _fmt(metrics.get("train_perplexity"), 2),
        "val_loss": _fmt(metrics.get("val_loss")),
        "val_perplexity": _fmt(metrics.get("val_perplexity"), 2),
        "sample_prompt": cfg.sample_prompt,
        "sample": (cfg.sample_prompt + metrics.get("sample", "")).replace("\n", " "),
    }


def pretrain_cli(argv: list[str]) -> int:
    """`scratchgpt pretrain [--config RECIPE] [--key value ...]`."""
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        print("options (recipe keys):")
        for name, value in PretrainConfig().to_dict().items():
            print(f"  --{name.replace('_', '-'):<22} default {value!r}")
        return 0
    try:
        cfg = resolve_config(PretrainConfig, argv)
        pretrain(cfg)
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError) as err:
        print(f"scratchgpt pretrain: error: {err}", file=sys.stderr)
        return 1
    return 0
