"""`scratchgpt pretrain`: a tokenizer and a ScratchGPT trained on a corpus (stage 6) — the causal-LM task.

The shared run (`run.py`) does the rest; this module says what pretraining is: its options, how the
tokenizer, model and windows are built, the next-token loss and the perplexity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import concatenate_datasets
from torch import nn

from ..cards import data_name, result
from ..data.lm import content_hash, prepare_lm_datasets
from ..data.sources import BUILTIN, BUILTIN_DOCSTRINGS, load_documents
from ..model import ScratchGPTConfig, ScratchGPTForCausalLM
from ..tokenization import load_tokenizer, token_byte_lengths, train_bpe_tokenizer
from .config import TrainConfig
from .run import run_training
from .task import Task, TaskSetup

TRAIN_ONLY = "train:"  # the prefix of a data source that only trains
DEFAULT_VOCAB = 8192  # the BPE trained when no tokenizer is given


@dataclass
class PretrainConfig(TrainConfig):
    """Everything a pretraining run depends on: the shared run's options plus data, tokenizer and model.

    Attributes:
        data: Corpus: files, folders, globs, `builtin` (Python's pydoc topics), `builtin-docstrings` (the
            standard library's docstrings) or a Hub dataset id. A source written `train:SOURCE` only trains:
            none of it validates (the split applies to the others).
        text_field: Field holding the text in JSON/CSV/Parquet files and Hub datasets.
        val_fraction: Share of the corpus held out for validation.
        split_by: characters (the book: the last characters validate) or documents.
        stride: Step between window starts (null: the context length, no overlap).
        tokenizer: Tokenizer folder, GPT-2's encoder.json + vocab.bpe folder, or Hub id (null: train a BPE).
        vocab_size: Size of the BPE trained when no tokenizer is given (null: 8192).
        preset: Model size: tiny, gpt2-small, gpt2-medium, gpt2-large, gpt2-xl.
        context_length: Override the preset's context length (the window length).
        emb_dim: Override the preset's width (embedding size).
        n_layers: Override the preset's number of transformer blocks.
        n_heads: Override the preset's number of attention heads (must divide emb_dim).
        drop_rate: Override the preset's dropout (null: the preset's; default 0, which measured better than
            0.1 for the main job: it reads its text only a few times).
        qkv_bias: Override the preset's query/key/value bias.
        tie_word_embeddings: Share the output head with the token embedding.
        init_scheme: gpt2 (normal 0.02) or book (PyTorch defaults).
        attn_implementation: sdpa (fast path) or eager (every line of the book).
        sample_prompt: Prompt of the sample printed at every evaluation.
        sample_tokens: Tokens of that sample.
        sample_temperature: Temperature of that sample (0: greedy); drawn from its own generator seeded
            with `seed`, so it never moves the training's random numbers.
        sample_top_k: Draw the sample from the k most likely tokens only (null: all).
        lr: Peak learning rate of AdamW.
        eval_batches: Batches per evaluation (null: the whole split); 20 x 16 windows hold the built-in
            corpus's whole validation text and a sample of its training text.
    """

    # data
    data: list[str] = field(default_factory=lambda: [BUILTIN, TRAIN_ONLY + BUILTIN_DOCSTRINGS])
    text_field: str = "text"
    val_fraction: float = 0.1
    split_by: str = "characters"
    stride: int | None = None
    # tokenizer
    tokenizer: str | None = None
    vocab_size: int | None = None
    # model
    preset: str = "tiny"
    context_length: int | None = None
    emb_dim: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    drop_rate: float | None = 0.0
    qkv_bias: bool | None = None
    tie_word_embeddings: bool = False
    init_scheme: str = "gpt2"
    attn_implementation: str = "sdpa"
    # samples
    sample_prompt: str = "The"
    sample_tokens: int = 30
    sample_temperature: float = 0.7
    sample_top_k: int | None = 40
    # the main job's training, chosen by measurement (benchmarks/bench_pretrain_quality.py)
    max_steps: int | None = 700
    lr: float = 2e-3
    eval_batches: int | None = 20

    SAFE_ON_RESUME: ClassVar[frozenset[str]] = TrainConfig.SAFE_ON_RESUME | {
        "sample_prompt", "sample_tokens", "sample_temperature", "sample_top_k",
    }  # fmt: skip
    VERB: ClassVar[str] = "pretrain"
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("data", "tokenizer")
    PATH_PREFIXES: ClassVar[tuple[str, ...]] = (TRAIN_ONLY,)

    def validate(self) -> None:
        super().validate()
        for name in ("context_length", "emb_dim", "n_layers", "n_heads", "stride", "vocab_size", "sample_tokens",
                     "sample_top_k"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if not self.split_sources:
            raise ValueError(f"data: give at least one corpus source that is split (not only {TRAIN_ONLY} ones)")
        if self.sample_temperature < 0:
            raise ValueError(f"sample_temperature must be >= 0 (0: greedy), got {self.sample_temperature!r}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"attn_implementation must be sdpa or eager, got {self.attn_implementation!r}")

    @property
    def split_sources(self) -> list[str]:
        """The sources split into training and validation text."""
        return [d for d in self.data if not d.startswith(TRAIN_ONLY)]

    @property
    def train_only_sources(self) -> list[str]:
        """The sources given as `train:SOURCE`, without the prefix: all of their text trains."""
        return [d.removeprefix(TRAIN_ONLY) for d in self.data if d.startswith(TRAIN_ONLY)]

    def default_name(self) -> str:
        """`<preset>-<first corpus>`: tiny-builtin, tiny-the-verdict, ..."""
        first = self.data[0]
        stem = first if first == BUILTIN else Path(first.rstrip("/")).stem or "corpus"
        return f"{self.preset}-{stem.replace('/', '-')}"


def _targets(batch: dict) -> torch.Tensor:
    """`(b, T-1)` targets of unshifted `labels`, or `(b, T)` of the book's pre-shifted `shift_labels`."""
    return batch["shift_labels"] if "shift_labels" in batch else batch["labels"][:, 1:]


def causal_lm_loss(model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token loss of a batch (`labels` unshifted, or the book's `shift_labels`) and its target count."""
    return model(**batch).loss, (_targets(batch) != -100).sum()


def _context(model: nn.Module) -> int:
    """The context length of a model, also through a DDP or peft wrapper."""
    inner = getattr(model, "module", model)
    return inner.config.max_position_embeddings


def shift_positions(batch: dict, context: int) -> dict:
    """The batch with each row's position ids moved up by a random offset that keeps them inside the context.

    Rows without `position_ids` count from 0; packed rows keep their restarts. Row i's offset is drawn
    uniformly from 0 to `context - 1 - max(position_ids[i])` with torch's global generator (seeded by
    the run and saved in its checkpoints). Trained this way, a model with learned absolute positions
    cannot tie what it does to where in the context a prompt's parts fall (randomised positions).

    Args:
        batch: A training batch with `input_ids` `(b, T)` and, for packed rows, `position_ids`.
        context: The model's context length (its largest position id plus one).

    Raises:
        ValueError: A row whose positions already pass the context.
    """
    ids = batch["input_ids"]
    positions = batch.get("position_ids")
    if positions is None:
        positions = torch.arange(ids.shape[1], device=ids.device).expand_as(ids)
    room = (context - 1 - positions.max(dim=1).values).cpu()  # (b,)
    if (room < 0).any():
        raise ValueError(f"position ids up to {int(positions.max())} do not fit in the context of {context}")
    offsets = (torch.rand(room.shape) * (room + 1)).long().clamp(max=room)  # uniform on 0..room
    return {**batch, "position_ids": positions + offsets.to(positions.device).unsqueeze(1)}


def causal_lm_stats(model: nn.Module, batch: dict, byte_lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per sequence, `(b,)` each: summed next-token loss, number of targets and, given `byte_lengths`
    (`tokenization.token_byte_lengths`), the UTF-8 bytes the targets stand for."""
    targets = _targets(batch)
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "shift_labels")}
    logits = model(**{**inputs, "use_cache": False}).logits  # no cache to build: one pass over whole rows
    logits = logits[:, : targets.shape[1]].float()  # position t predicts target t
    losses = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
    counted = targets != -100
    stats = {"loss_sum": losses.sum(1), "targets": counted.sum(1)}
    if byte_lengths is not None:
        lengths = byte_lengths.to(targets.device)[targets.clamp_min(0)]  # (b, T)
        stats["bytes"] = (lengths * counted).sum(1)
    return stats


def causal_lm_metrics(totals: dict[str, float]) -> dict[str, float]:
    """Token-weighted loss, perplexity = exp(loss) and, when bytes were counted, bits per byte
    (summed loss / ln 2 / bytes: comparable across tokenizers)."""
    loss = totals["loss_sum"] / totals["targets"] if totals.get("targets") else float("nan")
    metrics = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    if totals.get("bytes"):
        metrics["bits_per_byte"] = totals["loss_sum"] / math.log(2) / totals["bytes"]
    return metrics


class NextTokenObjective:
    """The loss, statistics and metrics of every causal-LM task (pretraining, instruction tuning).

    Attributes:
        byte_lengths: Set by a task that reports bits per byte: the bytes of text each token id stands for.
        position_shift: Set by a task trained with random position offsets (`shift_positions`).
    """

    byte_lengths: torch.Tensor | None = None
    position_shift: bool = False  # training batches go through `shift_positions` (evaluation never does)

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        if self.position_shift:
            batch = shift_positions(batch, _context(model))
        return causal_lm_loss(model, batch)

    def stats(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        return causal_lm_stats(model, batch, self.byte_lengths)

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        return causal_lm_metrics(totals)


class CausalLMTask(NextTokenObjective, Task):
    """Pretraining: next-token prediction on sliding windows of a corpus."""

    card_template = "pretrain"
    rows_vary_in_length = False  # windows of the context length
    config: PretrainConfig

    def setup(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> TaskSetup:
        cfg = self.config
        self.tokenizer = tok = self._tokenizer(acc, staging, resume_from)
        self.byte_lengths = token_byte_lengths(tok)  # every evaluation reports bits per byte
        config = self._model_config(tok)
        windows = {"max_length": config.context_length, "stride": cfg.stride, "seed": cfg.seed,
                   "text_field": cfg.text_field, "shifted_labels": cfg.book_mode}  # fmt: skip
        with acc.main_process_first():
            data = prepare_lm_datasets(
                cfg.split_sources, tok, val_fraction=cfg.val_fraction, split_by=cfg.split_by, **windows
            )
            train, self.provenance = data.train, data.provenance
            if cfg.train_only_sources:
                extra = prepare_lm_datasets(cfg.train_only_sources, tok, val_fraction=0.0, **windows)
                train = concatenate_datasets([data.train, extra.train])
                tokens = data.provenance["train_tokens"] + extra.provenance["train_tokens"]
                self.provenance = {**data.provenance, "train_windows": len(train), "train_tokens": tokens,
                                   "train_sha256": content_hash(train), "train_only": extra.provenance}  # fmt: skip
        set_seed(cfg.seed)  # the model's initial weights depend on the seed alone
        model = ScratchGPTForCausalLM(config)
        evaluation = {"val": data.validation} if data.validation is not None else {}
        return TaskSetup(model, tok, train, evaluation, provenance=self.provenance)

    def _tokenizer(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> Any:
        cfg = self.config
        if resume_from is not None:
            return load_tokenizer(resume_from)
        if cfg.tokenizer is not None:
            tok = load_tokenizer(cfg.tokenizer)
            if cfg.vocab_size is not None and cfg.vocab_size != len(tok):
                raise ValueError(
                    f"tokenizer {cfg.tokenizer} has {len(tok):,} tokens but vocab_size is {cfg.vocab_size:,}; "
                    f"drop --vocab-size or use a matching tokenizer"
                )
            return tok
        with acc.main_process_first():  # the main process trains it; the others read what it saved
            if acc.is_main_process:
                corpora = [load_documents(cfg.split_sources, text_field=cfg.text_field)]
                if cfg.train_only_sources:
                    corpora.append(load_documents(cfg.train_only_sources, text_field=cfg.text_field))
                texts = (row["text"] for docs in corpora for row in docs)
                tok = train_bpe_tokenizer(texts, vocab_size=cfg.vocab_size or DEFAULT_VOCAB)
                tok.save_pretrained(staging / "tokenizer")
            else:
                tok = load_tokenizer(staging / "tokenizer")
        return tok

    def _model_config(self, tok: Any) -> ScratchGPTConfig:
        cfg = self.config
        overrides: dict[str, Any] = {
            "vocab_size": len(tok),
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "init_scheme": cfg.init_scheme,
            "fused_linear_cross_entropy": not cfg.book_mode,  # book mode keeps the book's arithmetic
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id,
            "pad_token_id": tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
        }
        for name in ("context_length", "emb_dim", "n_layers", "n_heads", "drop_rate", "qkv_bias"):
            if getattr(cfg, name) is not None:
                overrides[name] = getattr(cfg, name)
        config = ScratchGPTConfig.from_preset(cfg.preset, **overrides)
        config._attn_implementation = cfg.attn_implementation
        return config

    def sample(self, model: nn.Module) -> str:
        """The continuation of `sample_prompt`: greedy, or drawn with `sample_temperature` and `sample_top_k`
        from the RNG state `seed` gives (the training's random numbers are left as they were)."""
        cfg, tok = self.config, self.tokenizer
        ids = tok(cfg.sample_prompt, return_tensors="pt").input_ids.to(model.device)
        room = model.config.context_length - ids.shape[1]
        options = {"do_sample": False}  # greedy
        if cfg.sample_temperature > 0:
            top_k = cfg.sample_top_k or 0  # 0: every token
            options = {"do_sample": True, "temperature": cfg.sample_temperature, "top_k": top_k}
        was_training = model.training
        model.eval()
        devices = [model.device] if model.device.type == "cuda" else []
        with torch.no_grad(), torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            new = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max(1, min(cfg.sample_tokens, room)),
                pad_token_id=model.config.pad_token_id,
                **options,
            )
        model.train(was_training)
        return tok.decode(new[0, ids.shape[1] :], skip_special_tokens=True)

    def card_fields(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg, provenance = self.config, self.provenance
        return {
            "data": ", ".join(cfg.data),
            **{k: provenance.get(k, "n/a") for k in ("train_windows", "validation_windows", "train_sha256")},
            "bits_per_byte": " / ".join(
                f"{metrics[f'{split}_bits_per_byte']:.4f}" if f"{split}_bits_per_byte" in metrics else "n/a"
                for split in ("train", "val")
            ),
            "sample_prompt": cfg.sample_prompt,
            "sample": (cfg.sample_prompt + metrics.get("sample", "")).replace("\n", " "),
        }

    def card_metadata(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        names = [data_name(d.removeprefix(TRAIN_ONLY)) for d in self.config.data]
        validated = [data_name(d) for d in self.config.split_sources]  # train: sources do not validate
        keys = ("loss", "perplexity", "bits_per_byte")
        found = [(k, metrics[f"val_{k}"]) for k in keys if f"val_{k}" in metrics]
        return {
            "datasets": names,
            "results": [result("text-generation", ", ".join(validated), "validation", k, v) for k, v in found],
        }

    def summary(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> str:
        nan = float("nan")
        return (
            f"train loss {metrics.get('train_loss', nan):.4f}, val loss {metrics.get('val_loss', nan):.4f} "
            f"(perplexity {metrics.get('val_perplexity', nan):.2f}, {metrics.get('val_bits_per_byte', nan):.4f} bits "
            "per byte); "
            f"sample: {self.config.sample_prompt}{metrics.get('sample', '')}".replace("\n", " ")  # one line
        )


def pretrain(cfg: PretrainConfig) -> Path:
    """Pretrain a ScratchGPT (and a BPE tokenizer unless one is given) on a corpus; returns OUT/final.

    Raises (before any folder is written):
        FileNotFoundError: Missing corpus, tokenizer or checkpoint.
        FileExistsError: The output folder exists and neither overwrite nor resume was asked.
        PermissionError: The output folder cannot be written.
        ValueError: An empty corpus, a corpus shorter than one window, a tokenizer whose vocabulary
            does not match `vocab_size`, or an invalid option.
    """
    return run_training(CausalLMTask(cfg))
