"""DPO cross-checked against TRL's `DPOTrainer`: the same batch, loss, rewards, gradients and optimizer step.

Both sides start from the same saved folder and the book's preference records in TRL's conversational
form, rendered by the folder's chat template. TRL tokenizes them itself; our pipeline
(`tokenize_preferences` + `PreferenceCollator`) must give the same `input_ids` and the same
response mask. On that batch, our `PreferenceTask` (the frozen reference copy, `sequence_logprobs`,
`dpo_loss`) and TRL's `compute_loss` (its fused LM head, loss type `sigmoid`) give the same loss,
rewards, reward accuracy and margin and the same gradient of every parameter; and one optimizer step
of `scratchgpt finetune-dpo` and of `DPOTrainer.train()` (fused AdamW, the same betas, clipping and
learning rate) leaves the same weights, and so do three (Adam's first step is blind to the gradient's
scale, so a wrong beta shows only in later steps, through each pair's weight in the loss).
"""

from __future__ import annotations

import json

import pytest
import torch

trl = pytest.importorskip("trl", reason="the DPO cross-check needs the trl extra: pip install 'hf-scratchgpt[trl]'")

from datasets import Dataset  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from hf_scratchgpt import ScratchGPTForCausalLM  # noqa: E402
from hf_scratchgpt.cli import main  # noqa: E402
from hf_scratchgpt.data.preference import PreferenceCollator, load_preference_records, tokenize_preferences  # noqa: E402
from hf_scratchgpt.folders import save_model_files  # noqa: E402
from hf_scratchgpt.prompts import user_content  # noqa: E402
from hf_scratchgpt.tokenization import train_bpe_tokenizer  # noqa: E402
from hf_scratchgpt.training.preference import PreferenceConfig, PreferenceTask  # noqa: E402

from .conftest import SHARED_DATA, tiny_config  # noqa: E402

CONTEXT = 128
PAIRS = 8
BETA = 0.1
LR = 1e-3
TOL = 1e-5


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny ScratchGPT whose tokenizer carries our alpaca chat template."""
    tok = train_bpe_tokenizer(
        [SHARED_DATA / "the-verdict.txt"], vocab_size=400, model_max_length=CONTEXT, chat_template="alpaca"
    )
    torch.manual_seed(0)
    config = tiny_config(vocab_size=len(tok), context_length=CONTEXT, eos_token_id=tok.eos_token_id)
    out = tmp_path_factory.mktemp("dpo") / "base"
    save_model_files(out, ScratchGPTForCausalLM(config), tok)
    return out, tok


@pytest.fixture(scope="module")
def pairs_file(folder, tmp_path_factory):
    """The first `PAIRS` book preference records that fit, in TRL's conversational form (JSONL)."""
    _, tok = folder
    records = json.loads((SHARED_DATA / "instruction-data-with-preference.json").read_text(encoding="utf-8"))
    rows = []
    for r in records:
        row = {
            "prompt": [{"role": "user", "content": user_content(r)}],
            "chosen": [{"role": "assistant", "content": r["chosen"]}],
            "rejected": [{"role": "assistant", "content": r["rejected"]}],
        }
        longest = max(
            len(tok.apply_chat_template(row["prompt"] + row[k], tokenize=True)["input_ids"])
            for k in ("chosen", "rejected")
        )
        if longest < CONTEXT:
            rows.append(row)
        if len(rows) == PAIRS:
            break
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _load(path):
    return ScratchGPTForCausalLM.from_pretrained(path, drop_rate=0.0)


def _trl_trainer(folder, pairs_file, out, steps=1, **overrides):
    path, tok = folder
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    args = DPOConfig(
        output_dir=str(out), beta=BETA, per_device_train_batch_size=PAIRS, max_steps=steps, learning_rate=LR,
        lr_scheduler_type="constant", adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        bf16=False, use_cpu=True, gradient_checkpointing=False, report_to="none", save_strategy="no",
        logging_steps=1, seed=0, **overrides,
    )  # fmt: skip
    return DPOTrainer(
        model=_load(path), ref_model=_load(path), args=args, train_dataset=Dataset.from_list(rows), processing_class=tok
    )


def _our_batch(folder, pairs_file):
    _, tok = folder
    tokenized = tokenize_preferences(load_preference_records(pairs_file), tok, "chat")
    return PreferenceCollator(tok.eos_token_id, tok.eos_token_id)([tokenized[i] for i in range(PAIRS)])


@pytest.mark.parametrize("sft_weight", [0.0, 0.5])
def test_the_batch_loss_rewards_and_every_gradient_equal_trls(folder, pairs_file, tmp_path, sft_weight):
    # sft_weight: TRL's loss types sigmoid + sft, weighted 1 and sft_weight (the chosen responses' mean NLL)
    mix = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]} if sft_weight else {}
    trainer = _trl_trainer(folder, pairs_file, tmp_path / "trl", **mix)
    theirs = trainer.data_collator([trainer.train_dataset[i] for i in range(PAIRS)])
    ours = _our_batch(folder, pairs_file)
    # the same sequences (chosen above rejected) and the same response tokens, end token included
    assert torch.equal(ours["input_ids"], theirs["input_ids"])
    assert torch.equal(ours["attention_mask"], theirs["attention_mask"])
    assert torch.equal(ours["labels"] != -100, theirs["completion_mask"].bool())
    assert torch.equal(ours["labels"][ours["labels"] != -100], theirs["input_ids"][theirs["completion_mask"].bool()])

    model = trainer.model.train()
    their_loss = trainer.compute_loss(model, theirs)
    their_loss.backward()
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}

    path, _ = folder
    policy = _load(path).train()
    task = PreferenceTask(PreferenceConfig(beta=BETA, sft_weight=sft_weight))
    task.reference = _load(path).eval().requires_grad_(False)
    terms = task.pair_terms(policy, ours)
    loss, n = task.loss(policy, ours)
    assert int(n) == PAIRS
    loss.backward()

    assert abs(loss.item() - their_loss.item()) < TOL
    nll = (terms["chosen_nll"].sum() / terms["chosen_tokens"].sum()).item()
    assert abs(loss.item() - terms["losses"].mean().item() - sft_weight * nll) < TOL
    assert abs(terms["chosen_rewards"].mean().item() - logged["rewards/chosen"]) < TOL
    assert abs(terms["rejected_rewards"].mean().item() - logged["rewards/rejected"]) < TOL
    margin = (terms["chosen_rewards"] - terms["rejected_rewards"]).mean().item()
    assert abs(margin - logged["rewards/margins"]) < TOL
    accuracy = (terms["chosen_rewards"] > terms["rejected_rewards"]).float().mean().item()
    assert accuracy == pytest.approx(logged["rewards/accuracies"])
    assert abs(terms["logps_chosen"].mean().item() - logged["logps/chosen"]) < 1e-4 * PAIRS  # sums over ~50 tokens
    assert terms["losses"].mean().item() == pytest.approx(0.6931, abs=1e-3)  # policy = reference: log 2
    their_grads = dict(model.named_parameters())
    checked = 0
    for name, param in policy.named_parameters():
        assert param.grad is not None, name
        torch.testing.assert_close(param.grad, their_grads[name].grad, atol=TOL, rtol=0)
        checked += 1
    assert checked == len(their_grads)
    assert any(p.grad.abs().max() > 1e-3 for p in policy.parameters())  # a real gradient, not zeros


@pytest.mark.parametrize("steps", [1, 3])
def test_optimizer_steps_of_finetune_dpo_equal_dpotrainers(folder, pairs_file, tmp_path, steps):
    path, _ = folder
    trainer = _trl_trainer(folder, pairs_file, tmp_path / "trl", steps=steps)
    trainer.train()
    out = tmp_path / "ours"
    args = [
        "finetune-dpo", "--model", str(path), "--data", str(pairs_file), "--prompt-style", "chat",
        "--val-fraction", "0", "--test-fraction", "0", "--batch-size", str(PAIRS), "--max-steps", str(steps),
        "--lr", str(LR), "--adam-beta2", "0.95", "--weight-decay", "0", "--clip-grad", "1.0",
        "--beta", str(BETA), "--out", str(out),
    ]  # fmt: skip
    assert main(args) == 0  # one batch per epoch: every step sees the same 8 pairs, as TRL's do
    ours = load_file(out / "final" / "model.safetensors")
    start = load_file(path / "model.safetensors")
    theirs = trainer.model.state_dict()
    moved = 0
    for name, value in ours.items():
        torch.testing.assert_close(value, theirs[name], atol=TOL, rtol=0)
        moved += not torch.equal(value, start[name])
    assert moved == len(ours)  # every tensor took the step
