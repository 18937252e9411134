"""TRL interop: a saved base model folder fine-tunes with TRL's `SFTTrainer` on chat records, assistant-only loss.

TRL tokenizes a conversation with the tokenizer's chat template and `return_assistant_tokens_mask=True`,
so our templates' `{% generation %}` blocks decide what is trained: the response and its end token.
Our own instruction pipeline (`tokenize_instructions` + `InstructionCollator(mask_prompt=True)`)
must give the same targets. The exact correspondence, for a record whose template tokens are `ids`
(`n` tokens, the template's end token last) with assistant mask `mask`:

* style ``alpaca`` (the prompt written by Python, no end token) + the collator, which appends one end
  token: exactly TRL's row, `input_ids == ids`, `labels == where(mask, ids, -100)`, padded alike;
* style ``chat`` (the template's text, its end token included) + the collator: the same `n` positions,
  then the collator's own end token at position `n` as one more target (an end token after the end token).

TRL 1.16 computes the training loss with its own fused LM head (`trl.trainer.utils.add_fused_lm_head`):
the hidden states of `model.base_model` times `get_output_embeddings().weight`. The loss check below
shows that this split of our model (the final LayerNorm in the body, a bias-free head) gives our loss.

TRL's `SFTConfig` defaults differ from `TrainingArguments`: activation checkpointing on (our blocks are
transformers' `GradientCheckpointingLayer`s, so the default is kept) and `bf16=True` (off here, so that
losses compare in float32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl", reason="TRL interop needs the trl extra: pip install 'hf-scratchgpt[trl]'")

from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained  # noqa: E402

from hf_scratchgpt import ScratchGPTForCausalLM  # noqa: E402
from hf_scratchgpt.data.instruction import InstructionCollator, tokenize_instructions  # noqa: E402
from hf_scratchgpt.folders import save_model_files  # noqa: E402
from hf_scratchgpt.prompts import chat_template, format_input, record_to_messages, response_prefix  # noqa: E402
from hf_scratchgpt.tokenization import train_bpe_tokenizer  # noqa: E402

from .conftest import SHARED_DATA, tiny_config  # noqa: E402

CONTEXT = 128
NUM_RECORDS = 32
IGNORE = -100


@pytest.fixture(scope="module")
def tokenizer():
    """A small BPE tokenizer (`<|endoftext|>` is eos and pad) carrying our alpaca chat template."""
    tok = train_bpe_tokenizer(
        [SHARED_DATA / "the-verdict.txt"], vocab_size=400, model_max_length=CONTEXT, chat_template="alpaca"
    )
    assert tok.chat_template == chat_template("alpaca")
    return tok


@pytest.fixture(scope="module")
def records() -> list[dict]:
    """The book's 1,100 instruction records."""
    return json.loads((SHARED_DATA / "instruction-data.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def short_records(tokenizer, records) -> list[dict]:
    """The first `NUM_RECORDS` instruction records whose rendering (end token included) is shorter than CONTEXT.

    Shorter by one: the collator's style-``chat`` batch (one more end token) then fits the model too.
    """
    texts = [tokenizer.apply_chat_template(record_to_messages(r), tokenize=False) for r in records]
    lengths = [len(ids) for ids in tokenizer(texts, verbose=False)["input_ids"]]
    short = [r for r, n in zip(records, lengths) if n < CONTEXT]
    assert len(short) >= NUM_RECORDS
    return short[:NUM_RECORDS]


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, tokenizer) -> Path:
    """A saved, untrained base model folder as `pretrain` writes it: weights, config, remote code, tokenizer."""
    eos = tokenizer.eos_token_id
    config = tiny_config(
        vocab_size=len(tokenizer),
        context_length=CONTEXT,
        eos_token_id=eos,
        bos_token_id=eos,
        pad_token_id=eos,
        fused_linear_cross_entropy=True,  # as pretrain sets it outside book mode
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("base")
    save_model_files(folder, ScratchGPTForCausalLM(config), tokenizer)
    return folder


def template_tokens(tokenizer, record: dict) -> tuple[list[int], list[int]]:
    """`(input_ids, assistant_masks)` of a record rendered by the tokenizer's chat template."""
    out = tokenizer.apply_chat_template(
        record_to_messages(record), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    return out["input_ids"], out["assistant_masks"]


def masked_labels(rows: list[tuple[list[int], list[int]]], width: int) -> torch.Tensor:
    """Labels `where(mask, ids, -100)` of each row, padded with -100 to `width`."""
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        ids_t, mask_t = torch.tensor(ids), torch.tensor(mask, dtype=torch.bool)
        labels[i, : len(ids)] = torch.where(mask_t, ids_t, IGNORE)
    return labels


def test_assistant_mask_is_the_response_and_end_token_as_our_collator_masks(tokenizer, records):
    picked = [r for r in records if r["input"]][:2] + [r for r in records if not r["input"]][:2]
    assert len(picked) == 4
    eos = tokenizer.eos_token_id
    rows = [template_tokens(tokenizer, r) for r in picked]
    for record, (ids, mask) in zip(picked, rows):
        prompt = tokenizer(format_input(record) + response_prefix("alpaca"))["input_ids"]
        response = tokenizer(record["output"] + tokenizer.eos_token)["input_ids"]
        assert response[-1] == eos and eos not in response[:-1]
        assert ids == prompt + response
        assert mask == [0] * len(prompt) + [1] * len(response)

    collate = InstructionCollator(pad_token_id=tokenizer.pad_token_id, mask_prompt=True)
    records = Dataset.from_list(picked)
    # Style "chat": the template's text without its final end token, which the collator appends (one end token,
    # as with every style): the same ids, and the same targets as the template's assistant mask.
    chat = collate(list(tokenize_instructions(records, tokenizer, style="chat")))
    width = max(len(ids) for ids, _ in rows)
    assert chat["labels"].shape == (len(rows), width)
    for i, (ids, _) in enumerate(rows):
        assert chat["input_ids"][i, : len(ids)].tolist() == ids
        assert chat["labels"][i].tolist().count(eos) == 1
    assert torch.equal(chat["labels"], masked_labels(rows, width))

    # Style "alpaca": the prompt written in Python (no end token) + the collator's end token = the template.
    alpaca = collate(list(tokenize_instructions(records, tokenizer, style="alpaca")))
    assert torch.equal(alpaca["labels"], masked_labels(rows, width))
    for i, (ids, _) in enumerate(rows):
        assert alpaca["input_ids"][i, : len(ids)].tolist() == ids
        assert alpaca["attention_mask"][i].sum() == len(ids)


def test_sft_trainer_fine_tunes_the_saved_folder_on_the_assistant_tokens(
    tokenizer, short_records, base_folder, tmp_path
):
    dataset = Dataset.from_list([{"messages": record_to_messages(r)} for r in short_records])
    max_steps = 16
    args = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        assistant_only_loss=True,
        max_steps=max_steps,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        max_length=CONTEXT,
        use_cpu=True,
        bf16=False,  # SFTConfig's default is True (CPU autocast); float32 for exact loss comparisons
        trust_remote_code=True,  # TRL loads the folder itself (model_init_kwargs)
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )
    trainer = SFTTrainer(model=str(base_folder), args=args, train_dataset=dataset)  # tokenizer from the folder too
    model = trainer.model
    assert isinstance(model, ScratchGPTForCausalLM)
    template = trainer.processing_class.chat_template
    assert template == chat_template("alpaca")
    # TRL keeps our template (no training template swapped in) and finds the end token inside the mask
    assert has_generation_markers(template) and trainer.chat_template is None
    assert is_chat_template_stop_token_trained(trainer.processing_class)

    batch = next(iter(trainer.get_train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    by_ids = {tuple(ids): i for i, ids in enumerate(template_tokens(tokenizer, r)[0] for r in short_records)}
    lengths = batch["attention_mask"].sum(1).tolist()
    order = [by_ids[tuple(batch["input_ids"][i, :n].tolist())] for i, n in enumerate(lengths)]  # rows are shuffled
    assert len(set(order)) == len(order) == 4
    rows = [template_tokens(tokenizer, short_records[i]) for i in order]
    width = batch["input_ids"].shape[1]
    assert width == max(lengths)
    # -100 exactly outside the assistant mask (and on padding)
    assert torch.equal(batch["labels"], masked_labels(rows, width))
    # and the whole batch is what our pipeline builds for these records (style alpaca)
    ours = InstructionCollator(pad_token_id=tokenizer.pad_token_id, mask_prompt=True)(
        list(tokenize_instructions(Dataset.from_list([short_records[i] for i in order]), tokenizer, style="alpaca"))
    )
    for key in ("input_ids", "attention_mask", "labels"):
        assert torch.equal(batch[key], ours[key]), key

    # TRL's loss (its fused LM head over our body) equals our model's own loss on the same batch
    reference = AutoModelForCausalLM.from_pretrained(base_folder, trust_remote_code=True)
    with torch.no_grad():
        trl_loss = trainer.compute_loss(model, dict(batch))
        ours_eval = reference.eval()(**batch).loss  # the plain head + ForCausalLMLoss
        ours_train = reference.train()(**batch).loss  # our fused linear cross-entropy (config flag)
        before = model(**batch).loss  # TRL's patched forward without fused_lm_head: our forward
    torch.testing.assert_close(trl_loss, ours_eval)
    torch.testing.assert_close(trl_loss, ours_train)
    torch.testing.assert_close(before, ours_eval)

    trainer.train()
    assert trainer.state.global_step == max_steps
    assert all(block.gradient_checkpointing for block in model.transformer.trf_blocks)  # SFTConfig's default
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert len(losses) == max_steps
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4 - 0.1
    with torch.no_grad():
        after = model.eval()(**batch).loss
    assert after < before - 0.1
