"""`scratchgpt finetune-instruct`: a saved ScratchGPT fine-tuned to follow instructions (stage 7.2, chapter 7).

The task on the shared run: instruction records (`{instruction, input, output}` or chat `messages`)
rendered in one prompt style of `hf_scratchgpt.prompts`, the book's padding collate (one end token
appended and kept as a target, later padding ignored; `--mask-prompt`: the prompt ignored too) or
packed rows, and the next-token loss. Every model folder's tokenizer carries the chat template of
the style it was trained with (rendering exactly the training prompt), and its generation config
stops at the end token.

The run ends with the final weights evaluated on the whole splits (loss, perplexity) and with greedy
responses to the test split: `OUT/test_responses.jsonl` (instruction, input, reference, response,
ended) scored by the `evaluate` modules shipped in the package (exact match, token F1, ROUGE-L) and
the share of responses that ended with the end token, in `final/eval_results.json`; with
`--judge-url`, an LLM judge behind an OpenAI-compatible endpoint also scores them 0-100 with the
book's prompt.

Examples longer than `max_length` tokens (prompt, response and end token): `overlong: skip` leaves
them out of every split and says how many; `overlong: truncate` keeps their first `max_length` tokens
(the book's `allowed_max_length`; the end token is then cut). A test prompt that leaves no room for a
response is not answered and is counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from huggingface_hub import EvalResult
from torch import nn

from ..cards import data_name, result
from ..data.classification import quiet_progress
from ..data.instruction import (
    InstructionCollator,
    load_instruction_splits,
    pack_examples,
    tokenize_instructions,
)
from ..folders import write_jsonl
from ..generation import generate_responses
from ..judge import JudgeUnavailable, judge_reachable, judge_responses
from ..metrics import generation_metrics
from ..prompts import render
from .pretrain import NextTokenObjective
from .responses import RESPONSES_FILE, ResponseConfig, ResponseTask, load_responder, records_sha256
from .run import run_training
from .task import TaskSetup

JUDGE_KEY_ENV = "SCRATCHGPT_JUDGE_API_KEY"  # the judge's key, if it needs one (never another service's key)


@dataclass
class InstructConfig(ResponseConfig):
    """Everything an instruction fine-tuning run depends on; the defaults are the book's chapter 7.

    The data, split, length, test-response and sample options are `ResponseConfig`'s.

    Attributes:
        data: A JSON/JSONL file of records ({instruction, input, output} or chat {messages}; split the
            book's way), a folder of splits (train.jsonl, validation.jsonl, test.jsonl, as
            `scratchgpt make-instruction-suite` writes them) or a Hub dataset id.
        prompt_style: alpaca (the book's), phi3, or chat (the starting tokenizer's own chat template).
        mask_prompt: Ignore the prompt's tokens in the loss (train on the response and end token only).
        packing: Pack whole training examples into rows of up to max_length tokens (evaluation stays unpacked).
        position_shift: Move each training row's positions up by a random offset, at most the room its batch's
            padded width leaves in the context (evaluation and generation start at 0): the model cannot tie an
            instruction to where its parts fall, which helps it on held-out combinations of wording and length.
        judge_url: OpenAI-compatible endpoint of an LLM judge that scores the test responses 0-100 with the
            book's prompt, e.g. http://127.0.0.1:11434/v1 for a local Ollama (null: no judge). The key, if
            needed, comes from $SCRATCHGPT_JUDGE_API_KEY (never printed).
        judge_model: The judge's model name at that endpoint.
    """

    prompt_style: str = "alpaca"
    mask_prompt: bool = False
    packing: bool = False
    position_shift: bool = False
    judge_url: str | None = None
    judge_model: str = "llama3"
    # the book's chapter-7 training: every parameter, AdamW 5e-5, weight decay 0.1, 2 epochs of batch 8
    epochs: int = 2
    lr: float = 5e-5

    SAFE_ON_RESUME: ClassVar[frozenset[str]] = ResponseConfig.SAFE_ON_RESUME | {"judge_url", "judge_model"}
    VERB: ClassVar[str] = "finetune-instruct"
    RECORDS: ClassVar[str] = "instruction records"

    def validate(self) -> None:
        super().validate()
        if self.book_mode and self.position_shift:
            raise ValueError(
                "position_shift draws from the global RNG every step, so book_mode cannot follow the book's draws"
            )

    def default_name(self) -> str:
        """`<model folder>-<data stem>-instruct`."""
        return self.run_name(self.data, "instruct")


def _keep_fitting(tokenized: Dataset, max_length: int) -> tuple[Dataset, int]:
    """The examples whose tokens and end token fit in `max_length`, and how many were left out."""
    with quiet_progress():
        kept = tokenized.filter(lambda ids: len(ids) + 1 <= max_length, input_columns="input_ids")
    return kept, len(tokenized) - len(kept)


class InstructionTask(NextTokenObjective, ResponseTask):
    """Fine-tuning a ScratchGPT to follow instructions (the book's chapter 7)."""

    card_template = "instruct"
    plot_metric = "perplexity"
    final_evaluation = True
    peft_task_type = "CAUSAL_LM"
    config: InstructConfig

    @property
    def position_shift(self) -> bool:  # NextTokenObjective's switch, read from the configuration
        return self.config.position_shift

    def setup(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> TaskSetup:
        cfg = self.config
        where = self.start(resume_from)
        tok, max_length = self.tokenizer, self.max_length
        if cfg.judge_url and acc.is_main_process:
            cause = judge_reachable(cfg.judge_url)  # a bad URL is an error now, not after training
            if cause is not None:
                print(f"judge: {cfg.judge_url} is not reachable now ({cause}); it is asked again once training ends")
        with acc.main_process_first(), quiet_progress():
            self.records = splits = load_instruction_splits(
                cfg.data, cfg.val_fraction, cfg.test_fraction, cfg.split_seed
            )
            tokenized = tokenize_instructions(splits, tok, cfg.prompt_style)
        for name, ds in tokenized.items():  # a map over no records adds no columns
            if len(ds) == 0:
                tokenized[name] = Dataset.from_dict({"input_ids": [], "prompt_length": []})
        self.skipped = {}
        if cfg.overlong == "skip":
            kept = {}
            for name, ds in tokenized.items():
                kept[name], self.skipped[name] = _keep_fitting(ds, max_length)
            tokenized = kept
            if any(self.skipped.values()) and acc.is_main_process:
                cut = ", ".join(f"{n} {k}" for k, n in self.skipped.items() if n)
                print(f"left out examples longer than {max_length} tokens (end token included): {cut}")
        if len(tokenized["train"]) == 0:
            raise ValueError(f"{cfg.data}: no training example fits in {max_length} tokens")
        train = tokenized["train"]
        if cfg.packing:
            with acc.main_process_first():
                train = pack_examples(train, max_length, self.eos, mask_prompt=cfg.mask_prompt)
        set_seed(cfg.seed)
        model = load_responder(where, self.eos, cfg.drop_rate)
        self.prepare(model, cfg.model if isinstance(where, str) else where, verbose=acc.is_main_process)
        self.set_first_prompt(splits)
        self.provenance = {
            "data": str(cfg.data),
            "prompt_style": cfg.prompt_style,
            "mask_prompt": cfg.mask_prompt,
            "packing": cfg.packing,
            "position_shift": cfg.position_shift,
            **{f"{k}_examples": len(v) for k, v in tokenized.items()},
            "packed_train_rows": len(train) if cfg.packing else None,
            "train_sha256": records_sha256(splits["train"]),
            "max_length": max_length,
            "overlong": cfg.overlong,
            "left_out": self.skipped,
            "longest_example": {k: max((len(x) + 1 for x in v["input_ids"]), default=0) for k, v in tokenized.items()},
            "base_model": self.base,
            "trainable_parameters": self.trainable["trainable"],
        }
        truncate = max_length - 1 if cfg.overlong == "truncate" else None  # inputs + the appended end token
        collate = InstructionCollator(pad_token_id=self.eos, mask_prompt=cfg.mask_prompt, allowed_max_length=truncate)
        val = tokenized["validation"]
        test = tokenized["test"]
        return TaskSetup(
            model,
            tok,
            train,
            {"val": val} if len(val) else {},
            collate_fn=collate,
            provenance=self.provenance,
            test={"test": test} if len(test) else {},
            train_lengths=lambda: [len(ids) for ids in train["input_ids"]],
        )

    def _encode(self, record: dict[str, Any]) -> tuple[list[int], int]:
        """A record's prompt ids (what a response is generated from) and the token count of the whole example."""
        prompt, full = render(record, self.config.prompt_style, self.tokenizer)
        ids = self.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"]
        return ids, len(self.tokenizer(full, add_special_tokens=False, verbose=False)["input_ids"]) + 1

    # ------------------------------------------------------------------ the test responses and their scores

    def final_outputs(self, model: nn.Module, out: Path, results: dict[str, Any]) -> dict[str, Any]:
        """Greedy responses to the test split -> `OUT/test_responses.jsonl`, scored; the judge if asked."""
        cfg = self.config
        records = self.records["test"]
        if not cfg.generate_test or len(records) == 0:
            (out / RESPONSES_FILE).unlink(missing_ok=True)  # an earlier final's, not these weights'
            return results
        rows, prompts = [], []
        skipped = no_room = 0  # examples the test loss left out (overlong: skip); prompts that fill the context
        for record in records:
            ids, whole = self._encode(record)
            if cfg.overlong == "skip" and whole > self.max_length:
                skipped += 1
            elif len(ids) >= model.config.max_position_embeddings:
                no_room += 1
            else:
                rows.append(record)
                prompts.append(ids)
        too_long = skipped + no_room
        left = f"; {skipped} longer than {self.max_length} tokens left out, as from the test loss" if skipped else ""
        if no_room:
            left += f"; {no_room} whose prompt fills the context left out (no room for a response)"
        print(f"generating responses to {len(prompts)} test prompts (greedy, up to {cfg.max_new_tokens} tokens){left}")
        responses = generate_responses(
            model,
            self.tokenizer,
            prompts,
            max_new_tokens=cfg.max_new_tokens,
            eos_token_id=self.eos,
            batch_size=max(cfg.batch_size, 16),
        )
        lines = [_response_row(record, r) for record, r in zip(rows, responses)]
        write_jsonl(out / RESPONSES_FILE, lines)
        scores = generation_metrics([r["response"] for r in lines], [r["reference"] for r in lines]) if lines else {}
        generation = {
            "responses": len(lines),
            "left_out_too_long": too_long,
            **scores,
            "ended_with_eos": sum(r["ended"] for r in lines) / len(lines) if lines else float("nan"),
            "responses_file": RESPONSES_FILE,
        }
        if cfg.judge_url:
            generation["judge"] = self._judge(lines)
        results = dict(results)
        results["test_generation"] = generation
        return results

    def _judge(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        cfg = self.config
        print(f"judge: scoring {len(lines)} responses with {cfg.judge_model} at {cfg.judge_url}")
        entries = [{**r, "output": r["reference"]} for r in lines]
        try:
            key = os.environ.get(JUDGE_KEY_ENV) or None
            judged = judge_responses(entries, url=cfg.judge_url, model=cfg.judge_model, api_key=key)
        except JudgeUnavailable as err:
            print(f"judge: {err} (the other results are written)")
            return {"error": str(err)}
        return judged

    def report(self, totals: dict[str, dict[str, float]]) -> dict[str, Any]:
        results: dict[str, Any] = {
            split: {"examples": None, **self.metrics(t)} for split, t in totals.items() if t.get("targets")
        }
        names = {"train": "train", "val": "validation", "test": "test"}
        for split in results:
            results[split]["examples"] = self.provenance.get(f"{names.get(split, split)}_examples")
        return results

    def eval_results(self, results: dict[str, Any]) -> list[EvalResult]:
        name, gen = data_name(self.config.data), results.get("test_generation", {})
        scores = [(k, gen[k]) for k in ("exact_match", "token_f1", "rouge_l") if k in gen]
        if "test" in results:
            scores.append(("loss", results["test"]["loss"]))
        return [result("text-generation", name, "test", k, v) for k, v in scores]

    def card_fields(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg, results = self.config, results or {}
        gen = results.get("test_generation", {})

        def loss(split: str) -> str:
            return f"{results[split]['loss']:.4f}" if split in results else "n/a"

        def pct(key: str) -> str:
            return f"{100 * gen[key]:.2f} %" if key in gen else "n/a"

        judge = gen.get("judge") or {}
        return {
            "base_model": self.base,
            "data": str(cfg.data),
            "train_sha256": self.provenance.get("train_sha256", "n/a"),
            "split_sizes": " / ".join(
                str(self.provenance.get(f"{k}_examples", 0)) for k in ("train", "validation", "test")
            ),
            "prompt_style": self.style_text(),
            "mask_prompt": "yes" if cfg.mask_prompt else "no",
            "packing": "yes" if cfg.packing else "no",
            "position_shift": "yes (random offsets in training)" if cfg.position_shift else "no",
            "max_length": self.max_length,
            "longest_example": max(self.provenance["longest_example"].values(), default=0),
            "overlong": cfg.overlong,
            "left_out": sum(self.skipped.values()),
            "train_mode": cfg.train_mode,
            "trainable": self.trainable_text(),
            **{f"{s}_final_loss": loss(s) for s in ("train", "val", "test")},
            "generated": "responses" in gen,
            "answered": (
                f"{gen['responses']} of {gen['responses'] + gen['left_out_too_long']} answered"
                if "responses" in gen
                else "not generated"
            ),
            "exact_match": pct("exact_match"),
            "token_f1": pct("token_f1"),
            "rouge_l": pct("rouge_l"),
            "ended_with_eos": pct("ended_with_eos"),
            "judge": (
                f"{judge['mean_score']:.1f} / 100 ({judge.get('judge_model')}, {judge.get('scored')} scored)"
                if judge.get("mean_score") is not None
                else f"unavailable ({judge['error']})"
                if "error" in judge
                else "no score parsed"
                if judge
                else "not run"
            ),
            "adapter_note": self.adapter_note(),
        }

    def summary(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> str:
        results = results or {}
        parts = [f"{s} loss {results[s]['loss']:.4f}" for s in ("train", "val", "test") if s in results]
        gen = results.get("test_generation", {})
        if "exact_match" in gen:
            parts.append(
                f"test exact match {100 * gen['exact_match']:.2f} %, token F1 {100 * gen['token_f1']:.2f} %, "
                f"ROUGE-L {100 * gen['rouge_l']:.2f} %, ended with the end token {100 * gen['ended_with_eos']:.2f} %"
            )
        judge = gen.get("judge") or {}
        if judge.get("mean_score") is not None:
            parts.append(f"judge {judge['mean_score']:.1f}/100")
        return ", ".join(parts) or super().summary(metrics)


def _response_row(record: dict[str, Any], response: Any) -> dict[str, Any]:
    """A line of test_responses.jsonl."""
    if record.get("messages"):
        messages = record["messages"]
        instruction = "\n".join(m["content"] for m in messages[:-1] if m["role"] == "user")
        row = {"instruction": instruction, "input": "", "reference": messages[-1]["content"]}
    else:
        row = {"instruction": record["instruction"], "input": record.get("input") or "", "reference": record["output"]}
    return {**row, "response": response.text.strip(), "ended": response.ended}


def finetune_instruct(cfg: InstructConfig) -> Path:
    """Fine-tune a saved ScratchGPT to follow instructions (the book's chapter 7); returns OUT/final.

    Raises (before any folder is written):
        FileNotFoundError: A missing data file or model folder.
        ValueError: A model folder that is not a ScratchGPT, a record with a missing field (its index is
            named), an unknown prompt style, no training example that fits, or an invalid option.
    """
    return run_training(InstructionTask(cfg))
