"""DPO's pieces on exact tensors: response log-probabilities, the loss and rewards, preference records, the collate."""

import json
import math

import pytest
import torch

from hf_scratchgpt.data.preference import (
    PreferenceCollator,
    drop_identical,
    encode_pair,
    fitting_pairs,
    load_preference_records,
    load_preference_splits,
    normalize_preference,
)
from hf_scratchgpt.dpo import dpo_loss, sequence_logprobs
from hf_scratchgpt.lora import disable_adapters, replace_linear_with_lora
from hf_scratchgpt.prompts import format_input, response_prefix

from .conftest import tiny_config


def test_sequence_logprobs_count_only_the_labelled_tokens():
    # one sequence of 4 positions over a vocabulary of 3; position t scores token t + 1
    logits = torch.log(
        torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]]])
    )  # (1, 4, 3)
    labels = torch.tensor([[-100, -100, 1, 2]])  # prompt (ids 0, 2) masked; response token 1, end token 2
    # token 1 is scored at position 1 (p 0.8), token 2 at position 2 (p 0.6); position 0 and 3 count for nothing
    expected = math.log(0.8) + math.log(0.6)
    assert sequence_logprobs(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    assert sequence_logprobs(logits, labels, average=True).item() == pytest.approx(expected / 2, abs=1e-6)
    padded = torch.cat([logits, torch.zeros(1, 2, 3)], dim=1)  # padding after the sequence: labels -100
    assert sequence_logprobs(padded, torch.tensor([[-100, -100, 1, 2, -100, -100]])).item() == pytest.approx(
        expected, abs=1e-6
    )


def test_sequence_logprobs_match_a_loop_over_a_batch():
    torch.manual_seed(0)
    logits = torch.randn(3, 6, 11)
    labels = torch.randint(0, 11, (3, 6))
    labels[0, :3] = labels[1, :1] = labels[2, 4:] = -100
    got = sequence_logprobs(logits, labels)
    for i in range(3):
        want = sum(
            torch.log_softmax(logits[i, t - 1], -1)[labels[i, t]].item() for t in range(1, 6) if labels[i, t] != -100
        )
        assert got[i].item() == pytest.approx(want, abs=1e-5)


def test_dpo_loss_and_rewards():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    rc, rr = torch.tensor([-3.5, -4.0]), torch.tensor([-3.5, -4.0])
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # pair 0: policy margin 1, reference margin 0 -> -log sigmoid(0.5); pair 1: margin -3 -> -log sigmoid(-1.5)
    assert losses.tolist() == pytest.approx([-math.log(1 / (1 + math.exp(-0.5))), -math.log(1 / (1 + math.exp(1.5)))])
    assert chosen.tolist() == pytest.approx([0.25, -0.5]) and rejected.tolist() == pytest.approx([-0.25, 1.0])
    same, zero_c, zero_r = dpo_loss(pc, pr, pc, pr)  # the policy is the reference: log 2, no reward
    assert same.tolist() == pytest.approx([math.log(2)] * 2) and not zero_c.any() and not zero_r.any()
    pc.requires_grad_(True)
    loss, c, _ = dpo_loss(pc, pr, rc, rr)
    assert not c.requires_grad and loss.requires_grad  # rewards are statistics, the loss trains


def test_the_collator_stacks_chosen_above_rejected_with_the_response_labelled():
    rows = [
        {"prompt_ids": [5, 6, 7], "chosen_ids": [8, 9], "rejected_ids": [10]},
        {"prompt_ids": [5, 6], "chosen_ids": [11], "rejected_ids": [12, 13, 14]},
    ]
    batch = PreferenceCollator(pad_token_id=0, eos_token_id=1)(rows)
    assert batch["input_ids"].tolist() == [
        [5, 6, 7, 8, 9, 1],
        [5, 6, 11, 1, 0, 0],
        [5, 6, 7, 10, 1, 0],
        [5, 6, 12, 13, 14, 1],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 6, [1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0], [1] * 6]
    x = -100
    assert batch["labels"].tolist() == [
        [x, x, x, 8, 9, 1],
        [x, x, 11, 1, x, x],
        [x, x, x, 10, 1, x],
        [x, x, 12, 13, 14, 1],
    ]
    cut = PreferenceCollator(pad_token_id=0, eos_token_id=1, max_length=4)(rows)  # TRL's keep_start
    assert cut["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 11, 1], [5, 6, 7, 10], [5, 6, 12, 13]]
    assert cut["labels"].tolist() == [[x, x, x, 8], [x, x, 11, 1], [x, x, x, 10], [x, x, 12, 13]]


def test_records_of_every_form_are_normalized():
    book = {"instruction": "Fix it.", "input": "teh", "output": "the", "chosen": "the", "rejected": "teh!"}
    assert normalize_preference(book, "r") == {
        "instruction": "Fix it.", "input": "teh", "chosen": "the", "rejected": "teh!"
    }  # fmt: skip
    standard = {"prompt": "Say hi.", "chosen": "Hi.", "rejected": "No."}
    assert normalize_preference(standard, "r") == {
        "instruction": "Say hi.", "input": "", "chosen": "Hi.", "rejected": "No."
    }  # fmt: skip
    chat = {
        "prompt": [{"role": "user", "content": "Say hi."}],
        "chosen": [{"role": "assistant", "content": "Hi."}],
        "rejected": [{"role": "assistant", "content": "No."}],
    }
    assert normalize_preference(chat, "r") == {
        "prompt_messages": [{"role": "user", "content": "Say hi."}], "chosen": "Hi.", "rejected": "No."
    }  # fmt: skip


@pytest.mark.parametrize(
    "record, message",
    [
        ({"instruction": "a", "chosen": "b"}, "record 1: missing field 'rejected'"),
        ({"instruction": "a", "rejected": "b"}, "record 1: missing field 'chosen'"),
        ({"chosen": "b", "rejected": "c"}, "record 1: missing or non-text field 'instruction' (or 'prompt')"),
        ({"instruction": "a", "chosen": 3, "rejected": "c"}, "record 1: missing or non-text field 'chosen'"),
        (
            {
                "prompt": [{"role": "user", "content": "a"}],
                "chosen": [{"role": "user", "content": "b"}],
                "rejected": "c",
            },  # noqa: E501
            "record 1: 'chosen' must be one assistant message",
        ),
        (
            {"chosen": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "rejected": []},
            "record 1: no 'prompt': TRL's implicit-prompt form",
        ),
    ],
)
def test_a_bad_record_is_named(tmp_path, record, message):
    good = {"instruction": "x", "input": "", "chosen": "y", "rejected": "z"}
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps([good, record]), encoding="utf-8")
    with pytest.raises(ValueError) as err:
        load_preference_records(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_file_mixing_forms_is_refused(tmp_path):
    path = tmp_path / "mixed.jsonl"
    rows = [
        {"prompt": "a", "chosen": "b", "rejected": "c"},
        {"prompt": [{"role": "user", "content": "a"}], "chosen": "b", "rejected": "c"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match="mixes conversational and text records"):
        load_preference_records(path)


def test_the_book_preference_file_splits_the_books_way_and_its_identical_pairs_are_found():
    from .conftest import SHARED_DATA

    splits = load_preference_splits(SHARED_DATA / "instruction-data-with-preference.json")
    assert {k: len(v) for k, v in splits.items()} == {"train": 935, "validation": 55, "test": 110}
    records = json.loads((SHARED_DATA / "instruction-data-with-preference.json").read_text(encoding="utf-8"))
    assert splits["test"][0]["chosen"] == records[935]["chosen"]  # file order: train, test, validation
    kept, identical = drop_identical(splits["train"])
    assert identical == 6 and len(kept) == 929  # records 122, 226, 400, 566, 628 and 676
    assert all(r["chosen"] != r["rejected"] for r in kept)


def test_a_pair_shares_one_prompt_and_keeps_both_responses(verdict_tokenizer):
    tok = verdict_tokenizer
    pair = {"instruction": "Name a colour.", "input": "", "chosen": "blue", "rejected": "it is red"}
    encoded = encode_pair(pair, tok, "alpaca")
    prompt = format_input(pair) + response_prefix("alpaca")
    assert tok.decode(encoded["prompt_ids"]) == prompt
    assert tok.decode(encoded["prompt_ids"] + encoded["chosen_ids"]) == prompt + "blue"
    assert tok.decode(encoded["prompt_ids"] + encoded["rejected_ids"]) == prompt + "it is red"


def test_overlong_pairs_are_skipped_or_truncated_and_counted():
    from datasets import Dataset

    ds = Dataset.from_list(
        [
            {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4, 5]},  # 5 tokens with the end token
            {"prompt_ids": [1, 2, 3, 4], "chosen_ids": [3], "rejected_ids": [4]},  # 6
            {"prompt_ids": [1, 2, 3, 4, 5], "chosen_ids": [3], "rejected_ids": [4]},  # the prompt fills 5
        ]
    )
    assert fitting_pairs(ds, 5, "skip") == [0]  # 1 and 2 left out
    assert fitting_pairs(ds, 5, "truncate") == [0, 1]  # 2 left out
    with pytest.raises(ValueError, match="overlong must be one of"):
        fitting_pairs(ds, 5, "cut")


def test_disabled_adapters_give_the_base_models_output():
    from hf_scratchgpt import ScratchGPTForCausalLM

    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(tiny_config()).eval()
    ids = torch.randint(0, 97, (2, 9))
    with torch.no_grad():
        base = model(input_ids=ids).logits
        replace_linear_with_lora(model, rank=2, alpha=4)
        for name, param in model.named_parameters():
            if name.endswith("lora.B"):
                param.normal_()  # a trained adapter: the output moves
        adapted = model(input_ids=ids).logits
        with disable_adapters(model):
            disabled = model(input_ids=ids).logits
        again = model(input_ids=ids).logits
    assert not torch.allclose(adapted, base)
    assert torch.equal(disabled, base) and torch.equal(again, adapted)
