"""What the tasks that teach a model to respond share (instruction tuning, preference tuning).

Both start from a ScratchGPT folder, render records in one prompt style (`hf_scratchgpt.prompts`),
stop responses at the end token, read their data the same way (one file split the book's way, a
folder of splits or a Hub dataset), leave out or truncate examples longer than `max_length`, show
the greedy response to the first validation prompt at every evaluation, and answer the test prompts
once training ends.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from datasets import Dataset
from torch import nn

from ..generation import generate_responses
from ..model import ScratchGPTForCausalLM
from ..prompts import STYLES, TEMPLATE_STYLES, chat_template, render, template_style
from ..tokenization import load_tokenizer
from .finetune import FinetuneConfig, FinetuneTask, quiet_loading, scratchgpt_config

OVERLONG = ("skip", "truncate")
RESPONSES_FILE = "test_responses.jsonl"  # in the run folder: the greedy answers to the test prompts


@dataclass
class ResponseConfig(FinetuneConfig):
    """The options of the verbs that train a model to respond.

    Attributes:
        data: The records: a JSON/JSONL file (split the book's way), a folder of splits (train.jsonl,
            validation.jsonl, test.jsonl) or a Hub dataset id.
        prompt_style: alpaca, phi3, or chat (the starting tokenizer's own chat template).
        train_mode: What trains: all (every parameter) or lora (adapters on the body's linear layers;
            see rank and alpha).
        max_length: Longest example in tokens, end token included (null: the model's context length).
        overlong: What happens to a longer example: skip (left out, counted) or truncate (its first
            max_length tokens).
        val_fraction: Share of a single file's records for validation (the book: 5 %).
        test_fraction: Share of a single file's records for the test (the book: 10 %).
        split_seed: Shuffle a single file's records with this seed before splitting (null: file order, the book).
        max_new_tokens: Most tokens of each greedy test response (it stops at the end token).
        generate_test: Answer the test prompts once training ends.
        sample_tokens: Tokens of the greedy response to the first validation prompt shown at every evaluation.
    """

    data: str | None = None
    prompt_style: str = "alpaca"
    max_length: int | None = None
    overlong: str = "skip"
    val_fraction: float = 0.05
    test_fraction: float = 0.10
    split_seed: int | None = None
    max_new_tokens: int = 256
    generate_test: bool = True
    sample_tokens: int = 40
    # the book's chapters 7 and its DPO notebook: every parameter, batch 8, a constant rate, 5 batches every 5 steps
    train_mode: str = "all"
    max_steps: int | None = None
    batch_size: int = 8
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    clip_grad: float | None = None
    eval_every: int = 5
    eval_batches: int | None = 5
    save_every: int | None = 500

    TRAIN_MODES: ClassVar[tuple[str, ...]] = ("all", "lora")
    PATH_FIELDS: ClassVar[tuple[str, ...]] = ("model", "data")
    SAFE_ON_RESUME: ClassVar[frozenset[str]] = FinetuneConfig.SAFE_ON_RESUME | {
        "max_new_tokens", "generate_test", "sample_tokens"
    }  # fmt: skip
    RECORDS: ClassVar[str] = "records"  # what `data` holds, for the message when it is missing

    def validate(self) -> None:
        super().validate()
        if not self.data:
            raise ValueError(f"data: give {self.RECORDS} (--data FILE.json, a folder of splits or a Hub id)")
        if self.prompt_style not in STYLES:
            raise ValueError(f"prompt_style must be one of {STYLES}, got {self.prompt_style!r}")
        if self.overlong not in OVERLONG:
            raise ValueError(f"overlong must be one of {OVERLONG}, got {self.overlong!r}")
        if self.max_length is not None and self.max_length <= 2:
            raise ValueError(f"max_length must be > 2, got {self.max_length!r}")
        for name in ("max_new_tokens", "sample_tokens"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        val, test = self.val_fraction, self.test_fraction
        if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
            raise ValueError(f"val_fraction ({val}) and test_fraction ({test}) must be >= 0 and leave training data")


def records_sha256(ds: Dataset) -> str:
    """sha256 of a split's records (JSON, in order): what exactly the run trained on."""
    h = hashlib.sha256()
    for row in ds:
        h.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def prompt_tokenizer(model: str, source: str | Path, style: str) -> Any:
    """The tokenizer of a fine-tuning run that renders prompts in `style`, with that style's chat template.

    Args:
        model: The model option as given (for messages).
        source: Where the tokenizer is (the model folder, or the checkpoint being resumed).
        style: alpaca or phi3 (their template is set, so the saved folder renders the training prompt),
            or chat (the tokenizer's own template, which must exist).

    Raises:
        ValueError: No end-of-text token, or style chat without a chat template.
    """
    tok = load_tokenizer(source)
    if tok.eos_token_id is None:
        raise ValueError(f"{model}: the tokenizer has no end-of-text token; a response needs one to end")
    if style in TEMPLATE_STYLES:
        before = template_style(tok)
        if before is not None and before != style:
            print(f"note: {model} carries the {before} prompt's chat template; training with prompt style {style} "
                  f"replaces it (--prompt-style chat keeps the prompt it was tuned on)")  # fmt: skip
        tok.chat_template = chat_template(style)
    elif not getattr(tok, "chat_template", None):
        raise ValueError(
            f"prompt_style chat: the tokenizer of {model} has no chat template; use alpaca or phi3 "
            "(their template is saved with the model)"
        )
    return tok


def load_responder(where: str | Path, eos: int, drop_rate: float | None) -> ScratchGPTForCausalLM:
    """A ScratchGPT causal LM whose generation stops at (and pads with) `eos`; `drop_rate` overrides the saved one."""
    overrides: dict[str, Any] = {"pad_token_id": eos}
    if drop_rate is not None:
        overrides["drop_rate"] = drop_rate
    with quiet_loading():
        model = ScratchGPTForCausalLM.from_pretrained(str(where), **overrides)
    model.generation_config.eos_token_id = eos  # generate() and pipelines stop at the end token
    model.generation_config.pad_token_id = eos
    return model


class ResponseTask(FinetuneTask):
    """A fine-tuning task whose model responds to prompts: the greedy sample shown at every evaluation.

    A subclass's `setup` begins with `start` (tokenizer, end token, longest example) and calls
    `set_first_prompt` once its data are loaded.
    """

    config: ResponseConfig
    first_prompt: list[int] | None = None

    def start(self, resume_from: Path | None) -> str | Path:
        """Set the tokenizer (with the style's template), the end token and the longest example; returns
        where the starting model is (a folder, or a Hub id).

        Raises:
            FileNotFoundError, ValueError: Not a ScratchGPT folder, no end token, style chat without a
                template, or a max_length longer than the model's context.
        """
        cfg = self.config
        base_config, where = scratchgpt_config(cfg.model)
        self.tokenizer = prompt_tokenizer(cfg.model, resume_from or where, cfg.prompt_style)
        self.eos = self.tokenizer.eos_token_id
        context = base_config.context_length
        if cfg.max_length is not None and cfg.max_length > context:
            raise ValueError(f"max_length {cfg.max_length} is longer than the model's context length {context}")
        self.max_length = cfg.max_length or context
        return where

    def style_text(self) -> str:
        """The prompt style for cards: `chat` names the template it is (alpaca, phi3 or the folder's own)."""
        style = self.config.prompt_style
        if style != "chat":
            return style
        known = template_style(self.tokenizer)
        return f"chat (the folder's {known} template)" if known else "chat (the folder's own template)"

    def prompt_record(self, record: dict[str, Any]) -> dict[str, Any]:
        """The instruction (or chat) record whose prompt `record` asks (default: the record itself)."""
        return record

    def prompt_ids(self, record: dict[str, Any]) -> list[int]:
        """Token ids of a record's prompt in the run's style: what a response is generated from."""
        prompt, _ = render(self.prompt_record(record), self.config.prompt_style, self.tokenizer)
        return self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]

    def set_first_prompt(self, splits: Any) -> None:
        """Keep the prompt of the first validation (else training) record for the samples (none if too long)."""
        self.first_prompt = None
        for name in ("validation", "train"):
            if len(splits[name]):
                ids = self.prompt_ids(splits[name][0])
                self.first_prompt = ids if len(ids) < self.max_length else None
                return

    def sample(self, model: nn.Module) -> str | None:
        """The greedy response to the first validation prompt."""
        if self.first_prompt is None:
            return None
        (response,) = generate_responses(
            model, self.tokenizer, [self.first_prompt], max_new_tokens=self.config.sample_tokens, eos_token_id=self.eos
        )
        return response.text


__all__ = [
    "OVERLONG",
    "RESPONSES_FILE",
    "ResponseConfig",
    "ResponseTask",
    "load_responder",
    "prompt_tokenizer",
    "records_sha256",
]
