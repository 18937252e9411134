"""Chapter 6: the book's spam data, dataset, losses, accuracies and finetuning numbers, the plot and the
offline paths of the download, against the book's own `llms_from_scratch.ch06`."""

import importlib
import inspect
import json
import urllib.error
import urllib.request
import zipfile

import pandas as pd
import pytest
import tiktoken
import torch
from llms_from_scratch import ch04 as book_ch04
from llms_from_scratch import ch06 as book
from torch.utils.data import DataLoader, Subset
from transformers import AutoModelForSequenceClassification

from hf_scratchgpt import ScratchGPTForSequenceClassification
from hf_scratchgpt.book import ch06 as ours
from hf_scratchgpt.book.ch04 import GPTModel, book_config

from ..conftest import SHARED_DATA
from .test_api_parity import _assert_compatible, _book_public_names

TINY = {  # the book's test model: small enough to finetune in a blink
    "vocab_size": 50257,
    "context_length": 120,
    "drop_rate": 0.0,
    "qkv_bias": False,
    "emb_dim": 12,
    "n_layers": 1,
    "n_heads": 2,
}
SPAM_FILE = SHARED_DATA / "SMSSpamCollection"


@pytest.fixture(scope="module")
def spam_df():
    return pd.read_csv(SPAM_FILE, sep="\t", header=None, names=["Label", "Text"])


@pytest.fixture(scope="module")
def split_csvs(spam_df, tmp_path_factory):
    """The book's balanced 70/10/20 split (labels 0/1), saved as the book saves it."""
    folder = tmp_path_factory.mktemp("spam")
    balanced = book.create_balanced_dataset(spam_df)
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    for name, part in zip(("train", "validation", "test"), book.random_split(balanced, 0.7, 0.1)):
        part.to_csv(folder / f"{name}.csv", index=None)
    return folder


@pytest.fixture(scope="module")
def tokenizer():
    return tiktoken.get_encoding("gpt2")


def test_public_names_and_signatures():
    names = _book_public_names(book)
    assert set(names) >= {"download_and_unzip_spam_data", "SpamDataset", "train_classifier_simple", "classify_review"}
    mine = importlib.import_module("hf_scratchgpt.book.ch06")
    for name in names:
        _assert_compatible(getattr(book, name), getattr(mine, name), f"ch06.{name}")
    for method in ("__getitem__", "__len__"):
        assert list(inspect.signature(getattr(ours.SpamDataset, method)).parameters) == list(
            inspect.signature(getattr(book.SpamDataset, method)).parameters
        )


def test_balanced_and_split_frames_are_the_books_rows(spam_df):
    balanced = ours.create_balanced_dataset(spam_df)
    pd.testing.assert_frame_equal(balanced, book.create_balanced_dataset(spam_df))  # same rows, order and index
    assert balanced["Label"].value_counts().to_dict() == {"ham": 747, "spam": 747}
    balanced["Label"] = balanced["Label"].map({"ham": 0, "spam": 1})
    parts = ours.random_split(balanced, 0.7, 0.1)
    for mine, theirs in zip(parts, book.random_split(balanced, 0.7, 0.1)):
        pd.testing.assert_frame_equal(mine, theirs)
    assert [len(p) for p in parts] == [1045, 149, 300]


def _tensors(dataset):
    inputs, labels = zip(*(dataset[i] for i in range(len(dataset))))
    return torch.stack(inputs), torch.stack(labels)


@pytest.mark.parametrize("max_length", [None, 120, 10])
def test_spam_dataset_gives_the_books_padded_tensors(split_csvs, tokenizer, max_length):
    csv = split_csvs / ("train.csv" if max_length is None else "validation.csv")
    mine, theirs = ours.SpamDataset(csv, tokenizer, max_length), book.SpamDataset(csv, tokenizer, max_length)
    assert len(mine) == len(theirs) and mine.max_length == theirs.max_length
    assert mine.encoded_texts == theirs.encoded_texts
    (ids, labels), (book_ids, book_labels) = _tensors(mine), _tensors(theirs)
    assert torch.equal(ids, book_ids) and torch.equal(labels, book_labels)
    assert ids.dtype == labels.dtype == torch.long
    if max_length is None:
        assert mine.max_length == 120 and (ids == 50256).any()  # the book's longest training text: padded rows


def test_spam_dataset_takes_the_packages_gpt2_tokenizer(split_csvs, tokenizer, gpt2_tokenizer):
    csv = split_csvs / "validation.csv"
    assert ours.SpamDataset(csv, gpt2_tokenizer).encoded_texts == ours.SpamDataset(csv, tokenizer).encoded_texts


def _classifier(model_class):
    """The book's chapter-6 setup on the tiny model: frozen, 2-class head, last block and final norm trainable."""
    torch.manual_seed(123)
    model = model_class(TINY).eval()
    for param in model.parameters():
        param.requires_grad = False
    torch.manual_seed(123)
    model.out_head = torch.nn.Linear(in_features=TINY["emb_dim"], out_features=2)
    for param in [*model.trf_blocks[-1].parameters(), *model.final_norm.parameters()]:
        param.requires_grad = True
    return model


def _loaders(split_csvs, tokenizer, dataset_class):
    train = dataset_class(split_csvs / "train.csv", tokenizer)
    val = dataset_class(split_csvs / "validation.csv", tokenizer, max_length=train.max_length)
    return DataLoader(Subset(train, range(10)), batch_size=5), DataLoader(Subset(val, range(10)), batch_size=5)


def test_losses_accuracies_and_training_follow_the_book(split_csvs, tokenizer, capsys):
    results = []
    for model_class, module in ((GPTModel, ours), (book_ch04.GPTModel, book)):
        model = _classifier(model_class)
        train_loader, val_loader = _loaders(split_csvs, tokenizer, module.SpamDataset)
        before = (
            module.calc_loss_loader(train_loader, model, "cpu"),
            module.calc_accuracy_loader(val_loader, model, "cpu", num_batches=1),
            module.calc_loss_batch(*next(iter(val_loader)), model, "cpu").item(),
            module.evaluate_model(model, train_loader, val_loader, "cpu", eval_iter=1),
        )
        capsys.readouterr()
        torch.manual_seed(123)
        optimizer = torch.optim.AdamW(model.parameters(), lr=5e-4, weight_decay=0.1)
        history = module.train_classifier_simple(
            model, train_loader, val_loader, optimizer, "cpu", num_epochs=3, eval_freq=2, eval_iter=1
        )
        after = module.calc_accuracy_loader(train_loader, model, "cpu")
        results.append((before, history, after, capsys.readouterr().out, model))
    (mine, theirs) = results
    assert mine[:4] == theirs[:4]  # the same numbers, bit for bit, and the same printed lines
    train_losses, val_losses, train_accs, val_accs, examples_seen = mine[1]
    assert len(train_losses) == len(val_losses) == 3 and len(train_accs) == len(val_accs) == 3
    assert examples_seen == 30 and train_losses[-1] < train_losses[0]
    assert "Ep 1 (Step 000000): Train loss" in mine[3] and "Validation accuracy:" in mine[3]

    text = "You are a winner you have been specially selected to receive $1000 cash or a $2000 award."
    for max_length in (120, 20):
        assert ours.classify_review(text, mine[4], tokenizer, "cpu", max_length) == book.classify_review(
            text, theirs[4], tokenizer, "cpu", max_length
        )
    assert ours.classify_review(text, mine[4], tokenizer, "cpu") in ("spam", "not spam")  # None: unpadded


def test_a_sequence_classification_model_gives_the_same_loss(split_csvs, tokenizer):
    """The package's classifier with the book model's weights (`score` = `out_head`, no pad id): same numbers.

    It reads the last position too (its config has no `pad_token_id`), through a `(b, emb)` head matmul
    rather than `(b, T, emb)`: the same numbers up to float rounding."""
    book_model = _classifier(GPTModel)
    config = book_config(TINY)
    config.num_labels = 2
    model = ScratchGPTForSequenceClassification(config).eval()
    state = {
        ("score." + k[len("out_head.") :] if k.startswith("out_head.") else k): v
        for k, v in book_model.state_dict().items()
    }
    model.load_state_dict(state)
    train_loader, _ = _loaders(split_csvs, tokenizer, ours.SpamDataset)
    loss = ours.calc_loss_loader(train_loader, book_model, "cpu")
    assert ours.calc_loss_loader(train_loader, model, "cpu") == pytest.approx(loss, rel=1e-6)  # a (b, emb) matmul
    assert ours.calc_accuracy_loader(train_loader, model, "cpu") == ours.calc_accuracy_loader(
        train_loader, book_model, "cpu"
    )


@pytest.mark.parametrize("num_classes, bias", [(2, True), (3, False)])
def test_a_swapped_head_saves_a_sequence_classification_folder(tmp_path, num_classes, bias):
    torch.manual_seed(123)
    model = GPTModel({**TINY, "vocab_size": 97}).eval()
    model.out_head = torch.nn.Linear(TINY["emb_dim"], num_classes, bias=bias)  # chapter 6's head swap
    model.save_pretrained(tmp_path)
    assert type(model) is GPTModel and model.out_head.weight.device.type == "cpu"  # the model is untouched
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["ScratchGPTForSequenceClassification"]
    ids = torch.randint(0, 97, (2, 9))
    for kwargs in ({}, {"trust_remote_code": True}):
        loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, **kwargs).eval()
        assert type(loaded).__name__ == "ScratchGPTForSequenceClassification"
        assert loaded.num_labels == num_classes and loaded.config.pad_token_id is None
        with torch.no_grad():  # no attention_mask, no pad id: the last position, as the book reads it
            torch.testing.assert_close(loaded(input_ids=ids).logits, model(ids)[:, -1, :], atol=1e-6, rtol=0)


def test_plot_values_saves_the_pdf_without_pyplot(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt  # the book's module imports pyplot; ours must not open a figure there

    monkeypatch.chdir(tmp_path)
    open_figures = plt.get_fignums()
    fig = ours.plot_values([0, 1, 2], [0, 50, 100], [0.9, 0.5, 0.3], [0.95, 0.6, 0.4], label="accuracy")
    assert (tmp_path / "accuracy-plot.pdf").read_bytes().startswith(b"%PDF")
    assert plt.get_fignums() == open_figures
    assert fig.axes[0].get_ylabel() == "Accuracy" and fig.axes[1].get_xlabel() == "Examples seen"


# ----------------------------------------------------------------------------- the download, offline

URL = "https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip"


@pytest.fixture
def no_network(monkeypatch):
    """urlopen fails as without a network, and counts its calls."""
    calls = []

    def urlopen(url, *args, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def _paths(tmp_path):
    extracted = tmp_path / "sms_spam_collection"
    return tmp_path / "sms_spam_collection.zip", extracted, extracted / "SMSSpamCollection.tsv"


def test_an_existing_data_file_is_kept(tmp_path, no_network, capsys):
    zip_path, extracted, data_file = _paths(tmp_path)
    extracted.mkdir()
    data_file.write_text("ham\thello\n")
    ours.download_and_unzip_spam_data(URL, zip_path, extracted, data_file)
    assert data_file.read_text() == "ham\thello\n" and not no_network
    assert "already exists" in capsys.readouterr().out


def test_an_existing_zip_is_extracted_without_download(tmp_path, no_network):
    zip_path, extracted, data_file = _paths(tmp_path)
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.write(SPAM_FILE, "SMSSpamCollection")
        zf.writestr("readme", "SMS Spam Collection v.1")
    ours.download_and_unzip_spam_data(URL, zip_path, extracted, data_file)
    assert data_file.read_bytes() == SPAM_FILE.read_bytes() and not no_network
    assert not (extracted / "SMSSpamCollection").exists()  # renamed, as the book does


def test_an_extracted_file_is_used_without_download(tmp_path, no_network):
    zip_path, extracted, data_file = _paths(tmp_path)
    extracted.mkdir()
    (extracted / "SMSSpamCollection").write_bytes(SPAM_FILE.read_bytes())
    ours.download_and_unzip_spam_data(URL, zip_path, extracted, str(data_file))  # a str path works too
    assert data_file.read_bytes() == SPAM_FILE.read_bytes() and not no_network


def test_no_file_and_no_network_raises_one_clear_error(tmp_path, no_network):
    zip_path, extracted, data_file = _paths(tmp_path)
    with pytest.raises(ours.SpamDataUnavailableError) as info:
        ours.download_and_unzip_spam_data(URL, zip_path, extracted, data_file)
    message = str(info.value)
    assert str(data_file) in message and "SMSSpamCollection" in message and URL in message
    assert isinstance(info.value.__cause__, urllib.error.URLError) and no_network == [URL]
    # the book's own test catches URLError to try its backup URL: it still can
    assert isinstance(info.value, urllib.error.URLError)
    assert not zip_path.exists() and not list(tmp_path.iterdir())  # no partial download left behind


def test_a_broken_zip_names_its_path(tmp_path, no_network):
    zip_path, extracted, data_file = _paths(tmp_path)
    zip_path.write_text("not a zip")
    with pytest.raises(zipfile.BadZipFile, match="sms_spam_collection.zip"):
        ours.download_and_unzip_spam_data(URL, zip_path, extracted, data_file)
