"""Classification sets: the book's spam procedure (747+747 -> 1,045/149/300), label sets, collate, errors."""

import pytest
import torch
from datasets import ClassLabel

from hf_scratchgpt.data import (
    ClassificationCollator,
    label_maps,
    load_classification_table,
    load_sms_spam,
    tokenize_classification,
)


def test_sms_spam_collection_reads_like_the_book(shared_data):
    table = load_classification_table(
        shared_data / "SMSSpamCollection", file_format="tsv", column_names=["label", "text"], labels=["ham", "spam"]
    )
    assert len(table) == 5572
    labels = list(table["label"])
    assert labels.count(0) == 4825 and labels.count(1) == 747
    assert isinstance(table.features["label"], ClassLabel)


def test_balanced_split_counts_and_seeding(shared_data):
    data = load_sms_spam(shared_data / "SMSSpamCollection", seed=123)
    assert {k: len(v) for k, v in data.items()} == {"train": 1045, "validation": 149, "test": 300}
    labels = [x for v in data.values() for x in v["label"]]
    assert labels.count(0) == labels.count(1) == 747
    assert label_maps(data) == ({"ham": 0, "spam": 1}, {0: "ham", 1: "spam"})
    again = load_sms_spam(shared_data / "SMSSpamCollection", seed=123)
    other = load_sms_spam(shared_data / "SMSSpamCollection", seed=7)
    assert list(again["test"]["text"]) == list(data["test"]["text"]) != list(other["test"]["text"])


def test_csv_json_and_integer_labels(tmp_path):
    (tmp_path / "t.csv").write_text("review,stars\ngreat,pos\nbad,neg\nfine,pos\n")
    ds = load_classification_table(tmp_path / "t.csv", text_column="review", label_column="stars")
    assert ds.features["label"].names == ["neg", "pos"] and list(ds["label"]) == [1, 0, 1]
    (tmp_path / "t.jsonl").write_text('{"text": "a", "label": 0}\n{"text": "b", "label": 2}\n')
    ds = load_classification_table(tmp_path / "t.jsonl")
    assert ds.features["label"].names == ["0", "1", "2"] and list(ds["label"]) == [0, 2]


def test_bad_tables_are_named(tmp_path):
    (tmp_path / "t.csv").write_text("text,label\nhello,ham\nworld,eggs\n")
    with pytest.raises(ValueError, match=r"record 1: label 'eggs' is not in the label set \['ham', 'spam'\]"):
        load_classification_table(tmp_path / "t.csv", labels=["ham", "spam"])
    with pytest.raises(ValueError, match=r"no column 'category'; the columns are \['text', 'label'\]"):
        load_classification_table(tmp_path / "t.csv", label_column="category")
    (tmp_path / "m.csv").write_text("text,label\nhello,ham\n,spam\n")
    with pytest.raises(ValueError, match="record 1: missing or non-text 'text'"):
        load_classification_table(tmp_path / "m.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(ValueError, match="e.csv: file is empty"):
        load_classification_table(tmp_path / "e.csv")
    (tmp_path / "bad.tsv").write_bytes(b"ham\tok\nspam\tfr\xeee\n")
    with pytest.raises(ValueError, match=r"bad.tsv: byte offset 14: not valid UTF-8"):
        load_classification_table(tmp_path / "bad.tsv", column_names=["label", "text"])
    (tmp_path / "noext").write_text("ham\thi\n")
    with pytest.raises(ValueError, match="noext: cannot tell the format"):
        load_classification_table(tmp_path / "noext")


def test_collate_pads_masks_and_truncates(shared_data, gpt2_tokenizer):
    data = load_sms_spam(shared_data / "SMSSpamCollection")
    tokd = tokenize_classification(data["train"].select(range(8)), gpt2_tokenizer)
    rows = list(tokd)
    batch = ClassificationCollator(pad_token_id=50256)(rows)
    longest = max(len(r["input_ids"]) for r in rows)
    assert batch["input_ids"].shape == (8, longest)
    assert batch["attention_mask"].sum(1).tolist() == [len(r["input_ids"]) for r in rows]
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 50256).all()
    assert batch["labels"].tolist() == [r["label"] for r in rows]
    fixed = ClassificationCollator(pad_token_id=50256, pad_to=12)(rows)
    assert fixed["input_ids"].shape == (8, 12)
    assert fixed["input_ids"][0].tolist()[: min(12, len(rows[0]["input_ids"]))] == rows[0]["input_ids"][:12]
    left = ClassificationCollator(pad_token_id=50256, padding_side="left")(rows)
    assert left["attention_mask"][:, -1].all()


def test_tokenize_truncation_keeps_the_first_tokens(gpt2_tokenizer, shared_data):
    data = load_sms_spam(shared_data / "SMSSpamCollection")
    tokd = tokenize_classification(data["train"].select(range(20)), gpt2_tokenizer, max_length=5)
    full = gpt2_tokenizer(data["train"][0]["text"])["input_ids"]
    assert tokd[0]["input_ids"] == full[:5] and max(len(x) for x in list(tokd["input_ids"])) <= 5
    assert tokd[0]["length"] == len(full)  # the length before truncation
    assert gpt2_tokenizer.backend_tokenizer.truncation is None  # the shared tokenizer is left untruncating


def test_collated_batch_runs_through_the_classifier(shared_data, gpt2_tokenizer):
    from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForSequenceClassification

    data = load_sms_spam(shared_data / "SMSSpamCollection")
    rows = list(tokenize_classification(data["train"].select(range(4)), gpt2_tokenizer, max_length=32))
    model = ScratchGPTForSequenceClassification(
        ScratchGPTConfig(vocab_size=50257, context_length=32, emb_dim=16, n_heads=2, n_layers=1, num_labels=2)
    ).eval()
    out = model(**ClassificationCollator(pad_token_id=50256)(rows))
    assert out.logits.shape == (4, 2) and torch.isfinite(out.loss)
