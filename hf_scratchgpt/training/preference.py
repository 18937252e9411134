"""`scratchgpt finetune-dpo`: preference tuning with DPO, from an instruction-tuned ScratchGPT.

The task on the shared run: preference pairs (`hf_scratchgpt.data.preference`) rendered in a prompt
style (default `chat`: the starting folder's own template, i.e. the prompt it was instruction-tuned
on), the DPO loss of `hf_scratchgpt.dpo`, and per evaluation, on train and validation: the loss, the
chosen and rejected rewards, the reward margin and the reward accuracy (the share of pairs whose
chosen reward is higher).

The reference model is the starting model, frozen: a copy of it (train mode `all`), or, in LoRA
mode, the trained model itself with its adapters disabled (no second copy in memory).

The run ends with the final weights evaluated on the whole splits and with greedy responses to the
test prompts from the reference ("before") and from the final model ("after"), written to
`OUT/test_responses.jsonl`; `final/eval_results.json` gives how often each equals the chosen and the
rejected response, before and after.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset
from huggingface_hub import EvalResult
from torch import nn

from ..cards import data_name, result
from ..data.classification import quiet_progress
from ..data.preference import (
    PreferenceCollator,
    drop_identical,
    fitting_pairs,
    load_preference_splits,
    pair_length,
    response_record,
    tokenize_preferences,
)
from ..dpo import dpo_loss, sequence_logprobs
from ..folders import write_jsonl
from ..generation import generate_responses
from ..lora import disable_adapters
from .responses import RESPONSES_FILE, ResponseConfig, ResponseTask, load_responder, records_sha256
from .run import run_training
from .task import TaskSetup

SPLITS = ("train", "validation", "test")


@dataclass
class PreferenceConfig(ResponseConfig):
    """Everything a DPO run depends on; the defaults are the book's DPO notebook (beta 0.1, AdamW 5e-6).

    The data, split, length, test-response and sample options are `ResponseConfig`'s.

    Attributes:
        data: A JSON/JSONL file of preference records (split the book's way: 85 % train, 10 % test, 5 %
            validation), a folder of splits (train.jsonl, validation.jsonl, test.jsonl) or a Hub dataset id.
        beta: DPO's beta (> 0): how far the model may move from the reference; smaller moves further.
        average_logprobs: Average the log-probabilities over the response tokens (the book's notebook)
            instead of summing them (the DPO paper and TRL).
        sft_weight: Add this times the chosen responses' negative log-likelihood per token to the loss
            (TRL's loss types sigmoid + sft with these weights; RPO): it keeps the chosen answers likely
            while DPO pushes the rejected ones down (0: plain DPO).
        prompt_style: chat (the starting folder's chat template: the prompt it was instruction-tuned
            on), alpaca or phi3.
        overlong: What happens to a longer pair: skip (left out, counted) or truncate (each sequence cut
            to its first max_length tokens; a pair whose prompt leaves no room is left out, counted).
    """

    beta: float = 0.1
    average_logprobs: bool = False
    sft_weight: float = 0.0
    prompt_style: str = "chat"
    # the book's DPO notebook: every parameter, AdamW 5e-6 (PyTorch's betas), weight decay 0.01, 1 epoch of
    # batch 8, no dropout
    adam_beta2: float = 0.999
    drop_rate: float | None = 0.0
    epochs: int = 1
    lr: float = 5e-6
    weight_decay: float = 0.01

    VERB: ClassVar[str] = "finetune-dpo"
    RECORDS: ClassVar[str] = "preference records"

    def validate(self) -> None:
        super().validate()
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta > 0:
            raise ValueError(f"beta must be > 0, got {self.beta!r}")
        if isinstance(self.sft_weight, bool) or not isinstance(self.sft_weight, (int, float)) or self.sft_weight < 0:
            raise ValueError(f"sft_weight must be >= 0, got {self.sft_weight!r}")

    def default_name(self) -> str:
        """`<model folder>-<data stem>-dpo`."""
        return self.run_name(self.data, "dpo")


class PreferenceTask(ResponseTask):
    """Preference tuning with DPO against a frozen reference (the starting model)."""

    card_template = "dpo"
    plot_metric = "reward_margin"
    final_evaluation = True
    peft_task_type = "CAUSAL_LM"
    config: PreferenceConfig

    def setup(self, acc: Accelerator, staging: Path, resume_from: Path | None) -> TaskSetup:
        cfg = self.config
        where = self.start(resume_from)
        tok, max_length = self.tokenizer, self.max_length
        with acc.main_process_first(), quiet_progress():
            splits = load_preference_splits(cfg.data, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
            self.records = splits
            if cfg.prompt_style != "chat" and "prompt_messages" in splits["train"].column_names:
                raise ValueError(
                    f"{cfg.data}: conversational records need prompt_style chat (the model's chat template), "
                    f"not {cfg.prompt_style!r}"
                )
            self.identical = {}
            for name, part in splits.items():
                splits[name], self.identical[name] = drop_identical(part)
            tokenized = tokenize_preferences(splits, tok, cfg.prompt_style)
            self.left_out = {}
            for name, ds in tokenized.items():
                if len(ds) == 0:  # a map over no records adds no columns
                    tokenized[name] = ds = Dataset.from_dict({"prompt_ids": [], "chosen_ids": [], "rejected_ids": []})
                kept = fitting_pairs(ds, max_length, cfg.overlong)
                self.left_out[name] = len(ds) - len(kept)
                tokenized[name], splits[name] = ds.select(kept), splits[name].select(kept)  # as the loss sees them
        if len(tokenized["train"]) == 0:
            why = (
                "every training pair has identical chosen and rejected responses"
                if self.identical["train"] and not self.left_out["train"]
                else f"no training pair with different responses fits in {max_length} tokens"
            )
            raise ValueError(f"{cfg.data}: {why}")
        if any(self.identical.values()) and acc.is_main_process:
            cut = ", ".join(f"{n} {k}" for k, n in self.identical.items() if n)
            print(f"left out pairs whose chosen and rejected responses are identical (no preference to learn): {cut}")
        if any(self.left_out.values()) and acc.is_main_process:
            cut = ", ".join(f"{n} {k}" for k, n in self.left_out.items() if n)
            rule = "longer than" if cfg.overlong == "skip" else "whose prompt leaves no room in"
            print(f"left out pairs {rule} {max_length} tokens (end token included): {cut}")
        set_seed(cfg.seed)
        model = load_responder(where, self.eos, cfg.drop_rate)
        # the reference: the starting model, frozen (LoRA: the same model with its adapters disabled)
        self.reference = None
        if cfg.train_mode != "lora":
            self.reference = copy.deepcopy(model).requires_grad_(False).eval().to(acc.device)
        self.prepare(model, cfg.model if isinstance(where, str) else where, verbose=acc.is_main_process)
        self.set_first_prompt(splits)
        self.provenance = {
            "data": str(cfg.data),
            "prompt_style": cfg.prompt_style,
            "beta": cfg.beta,
            "average_logprobs": cfg.average_logprobs,
            "sft_weight": cfg.sft_weight,
            **{f"{k}_pairs": len(v) for k, v in tokenized.items()},
            "train_sha256": records_sha256(splits["train"]),
            "max_length": max_length,
            "overlong": cfg.overlong,
            "left_out": self.left_out,
            "identical_left_out": self.identical,
            "longest_pair": {k: max((pair_length(e) for e in v), default=0) for k, v in tokenized.items()},
            "base_model": self.base,
            "reference": "the base model, frozen (a copy)" if self.reference is not None else "adapters disabled",
            "trainable_parameters": self.trainable["trainable"],
        }
        collate = PreferenceCollator(self.eos, self.eos, max_length if cfg.overlong == "truncate" else None)
        val, test = tokenized["validation"], tokenized["test"]
        return TaskSetup(
            model,
            tok,
            tokenized["train"],
            {"val": val} if len(val) else {},
            collate_fn=collate,
            provenance=self.provenance,
            test={"test": test} if len(test) else {},
            train_lengths=lambda: [pair_length(e) for e in tokenized["train"]],
        )

    # ------------------------------------------------------------------ the loss and its statistics

    @contextlib.contextmanager
    def as_reference(self, model: nn.Module) -> Iterator[nn.Module]:
        """The reference model: the frozen copy, or `model` with its LoRA adapters disabled (and no dropout)."""
        if self.reference is not None:
            yield self.reference
            return
        training = model.training
        model.eval()
        try:
            with disable_adapters(model):
                yield model
        finally:
            model.train(training)

    def pair_terms(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        """Per pair, `(b,)` each: the DPO loss, both rewards, the policy's log-probabilities and, for the
        chosen response, its summed negative log-likelihood and token count (the `sft_weight` term)."""
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        labels = batch["labels"]
        tokens = (labels[:, 1:] != -100).sum(-1)  # (2b,) response tokens, end token included
        summed = sequence_logprobs(model(**inputs).logits, labels)
        with torch.no_grad(), self.as_reference(model) as reference:
            ref = sequence_logprobs(reference(**inputs).logits, labels)
        if self.config.average_logprobs:  # the book's notebook
            policy, ref = summed / tokens.clamp_min(1), ref / tokens.clamp_min(1)
        else:
            policy = summed
        policy_chosen, policy_rejected = policy.chunk(2)  # the collator stacks chosen above rejected
        ref_chosen, ref_rejected = ref.chunk(2)
        losses, chosen_rewards, rejected_rewards = dpo_loss(
            policy_chosen, policy_rejected, ref_chosen, ref_rejected, self.config.beta
        )
        return {
            "losses": losses,
            "chosen_rewards": chosen_rewards,
            "rejected_rewards": rejected_rewards,
            "logps_chosen": policy_chosen.detach(),
            "logps_rejected": policy_rejected.detach(),
            "chosen_nll": -summed.chunk(2)[0],
            "chosen_tokens": tokens.chunk(2)[0],
        }

    def loss(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean DPO loss, plus `sft_weight` times the chosen responses' mean negative log-likelihood per token."""
        t = self.pair_terms(model, batch)
        loss = t["losses"].mean()
        if self.config.sft_weight:
            loss = loss + self.config.sft_weight * t["chosen_nll"].sum() / t["chosen_tokens"].sum().clamp_min(1)
        return loss, torch.tensor(t["losses"].shape[0], device=loss.device)

    def stats(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            t = self.pair_terms(model, batch)
        return {
            "loss_sum": t["losses"],
            "chosen_reward_sum": t["chosen_rewards"],
            "rejected_reward_sum": t["rejected_rewards"],
            "correct": (t["chosen_rewards"] > t["rejected_rewards"]).float(),
            "logps_chosen_sum": t["logps_chosen"],
            "logps_rejected_sum": t["logps_rejected"],
            "chosen_nll_sum": t["chosen_nll"],
            "chosen_tokens": t["chosen_tokens"].float(),
            "pairs": torch.ones_like(t["losses"]),
        }

    def metrics(self, totals: dict[str, float]) -> dict[str, float]:
        n = totals.get("pairs") or float("nan")
        chosen, rejected = totals.get("chosen_reward_sum", 0.0) / n, totals.get("rejected_reward_sum", 0.0) / n
        dpo = totals.get("loss_sum", 0.0) / n
        nll = totals.get("chosen_nll_sum", 0.0) / (totals.get("chosen_tokens") or float("nan"))
        return {
            "loss": dpo + self.config.sft_weight * nll if self.config.sft_weight else dpo,  # what is minimised
            "dpo_loss": dpo,
            "rewards_chosen": chosen,
            "rewards_rejected": rejected,
            "reward_margin": chosen - rejected,
            "reward_accuracy": totals.get("correct", 0.0) / n,
            "logps_chosen": totals.get("logps_chosen_sum", 0.0) / n,
            "logps_rejected": totals.get("logps_rejected_sum", 0.0) / n,
            "chosen_nll": nll,
        }

    # ------------------------------------------------------------------ samples and the test responses

    def prompt_record(self, record: dict[str, Any]) -> dict[str, Any]:
        return response_record(record, "chosen")

    def report(self, totals: dict[str, dict[str, float]]) -> dict[str, Any]:
        names = {"train": "train", "val": "validation", "test": "test"}
        return {
            split: {"pairs": self.provenance.get(f"{names.get(split, split)}_pairs"), **self.metrics(t)}
            for split, t in totals.items()
            if t.get("pairs")
        }

    def final_outputs(self, model: nn.Module, out: Path, results: dict[str, Any]) -> dict[str, Any]:
        """Greedy test responses before (the reference) and after -> `OUT/test_responses.jsonl`, compared."""
        cfg = self.config
        pairs = self.records["test"]
        if not cfg.generate_test or len(pairs) == 0:
            (out / RESPONSES_FILE).unlink(missing_ok=True)  # an earlier final's, not these weights'
            return results
        rows, prompts = [], []
        for pair in pairs:
            ids = self.prompt_ids(pair)
            if len(ids) < model.config.max_position_embeddings:
                rows.append(pair)
                prompts.append(ids)
        print(f"generating responses to {len(prompts)} test prompts, before and after (greedy, "
              f"up to {cfg.max_new_tokens} tokens)")  # fmt: skip

        def respond(m: nn.Module) -> list[Any]:
            return generate_responses(
                m, self.tokenizer, prompts, max_new_tokens=cfg.max_new_tokens, eos_token_id=self.eos,
                batch_size=max(cfg.batch_size, 16),
            )  # fmt: skip

        after = respond(model)
        with self.as_reference(model) as reference:
            before = respond(reference)
        lines = [
            {
                "prompt": self.tokenizer.decode(ids),
                "chosen": pair["chosen"],
                "rejected": pair["rejected"],
                "before": b.text.strip(),  # stripped, as the book and finetune-instruct compare responses
                "after": a.text.strip(),
                "ended_before": b.ended,  # the response ended with the end token
                "ended_after": a.ended,
            }
            for pair, ids, b, a in zip(rows, prompts, before, after)
        ]
        write_jsonl(out / RESPONSES_FILE, lines)
        n = len(lines)

        def share(when: str, which: str) -> float:
            return sum(r[when] == r[which].strip() for r in lines) / n if n else float("nan")

        generation = {
            "responses": n,
            "left_out_too_long": len(pairs) - n,
            **{f"{w}_{when}": share(when, w) for w in ("chosen", "rejected") for when in ("before", "after")},
            **{
                f"ended_with_eos_{when}": sum(r[f"ended_{when}"] for r in lines) / n if n else float("nan")
                for when in ("before", "after")
            },
            "responses_file": RESPONSES_FILE,
        }
        return {**results, "test_generation": generation}

    # ------------------------------------------------------------------ the card

    def eval_results(self, results: dict[str, Any]) -> list[EvalResult]:
        name = data_name(self.config.data)
        found = []
        for split in ("val", "test"):
            for key in ("reward_accuracy", "reward_margin", "loss"):
                if split in results:
                    found.append(result("text-generation", name, split, key, results[split][key]))
        return found

    def card_fields(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg, results = self.config, results or {}
        gen = results.get("test_generation", {})

        def value(split: str, key: str) -> str:
            return f"{results[split][key]:.4f}" if split in results else "n/a"

        def pct(key: str) -> str:
            return f"{100 * gen[key]:.2f} %" if key in gen else "n/a"

        rows = []
        for split, label in (("train", "train"), ("val", "validation"), ("test", "test")):
            cells = [value(split, k) for k in ("dpo_loss", "rewards_chosen", "rewards_rejected", "reward_margin")]
            cells.append(value(split, "reward_accuracy"))
            rows.append(f"| {label} | " + " | ".join(cells) + " |")
        return {
            "base_model": self.base,
            "data": str(cfg.data),
            "train_sha256": self.provenance.get("train_sha256", "n/a"),
            "split_sizes": " / ".join(str(self.provenance.get(f"{k}_pairs", 0)) for k in SPLITS),
            "prompt_style": self.style_text(),
            "beta": cfg.beta,
            "sft_weight": cfg.sft_weight,
            "logprobs": "averaged over the response tokens (the book)" if cfg.average_logprobs else "summed (DPO, TRL)",
            "reference": self.provenance["reference"],
            "max_length": self.max_length,
            "longest_pair": max(self.provenance["longest_pair"].values(), default=0),
            "overlong": cfg.overlong,
            "left_out": (
                f"{sum(self.left_out.values())} longer than allowed"
                if cfg.overlong == "skip"
                else f"{sum(self.left_out.values())} whose prompt leaves no room (longer ones cut to the first "
                f"{self.max_length} tokens)"
            ),
            "identical": sum(self.identical.values()),
            "train_mode": cfg.train_mode,
            "trainable": self.trainable_text(),
            "result_rows": "\n".join(rows),
            "generated": "responses" in gen,
            "answered": f"{gen['responses']} test prompts" if "responses" in gen else "not generated",
            **{f"{w}_{when}": pct(f"{w}_{when}") for w in ("chosen", "rejected") for when in ("before", "after")},
            "ended_with_eos": pct("ended_with_eos_after"),
            "adapter_note": self.adapter_note(),
        }

    def summary(self, metrics: dict[str, Any], results: dict[str, Any] | None = None) -> str:
        results = results or {}
        parts = [
            f"{s} loss {results[s]['loss']:.4f}, reward margin {results[s]['reward_margin']:.4f}, "
            f"reward accuracy {results[s]['reward_accuracy']:.4f}"
            for s in ("val", "test")
            if s in results
        ]
        gen = results.get("test_generation", {})
        if "chosen_after" in gen:
            parts.append(
                f"test responses equal to the chosen one {100 * gen['chosen_before']:.2f} % before, "
                f"{100 * gen['chosen_after']:.2f} % after; to the rejected one {100 * gen['rejected_before']:.2f} % "
                f"before, {100 * gen['rejected_after']:.2f} % after"
            )
        return "; ".join(parts) or super().summary(metrics)


def finetune_dpo(cfg: PreferenceConfig) -> Path:
    """Preference-tune an instruction-tuned ScratchGPT with DPO; returns OUT/final.

    Raises (before any folder is written):
        FileNotFoundError: A missing data file or model folder.
        ValueError: A model folder that is not a ScratchGPT, a record without chosen or rejected or with
            identical ones (its index is named), beta <= 0, an unknown prompt style, no training pair that
            fits, or an invalid option.
    """
    return run_training(PreferenceTask(cfg))
