"""Chapter 6 of the book: finetuning GPT as a spam classifier (`llms_from_scratch.ch06`).

Every function keeps the book's name, signature, printed output and numbers: `create_balanced_dataset`
and `random_split` draw the book's pandas samples (`random_state=123`), so they give the book's rows
(747 ham + 747 spam, split 1,045 / 149 / 300); `SpamDataset` gives the book's padded tensors; the loss,
accuracy and training functions follow the book's trajectory step for step for the same seed.

The model is the book's `GPTModel` (`hf_scratchgpt.book.ch04`) with its `out_head` swapped for a
2-class `Linear`, as in the chapter; the logits of the last position, padding included, classify the
text. The functions also take any ScratchGPT/transformers causal LM, and a
`ScratchGPTForSequenceClassification`, whose `(b, num_labels)` logits are used as they come (that model
reads the last non-padding token when its config has a `pad_token_id`, rather than the last position).
The tokenizer is the book's tiktoken encoding or one of this package's (transformers, `SimpleTokenizer`).

Beyond the book: `download_and_unzip_spam_data` works offline, using a zip already at `zip_path` or an
already extracted `SMSSpamCollection` before it tries the network, and when it cannot download raises
one error that says where to put the file; `plot_values` draws on a matplotlib `Figure` (no display,
never blocks), saves `{label}-plot.pdf` as the book does and returns the figure; `classify_review`
with `max_length=None` reads the text unpadded (the book's code needs a number).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.tokenize import encode, encode_texts
from ._common import average_batch_loss, context_size_of, logits_of, train_and_val_loss
from .ch05 import DOWNLOAD_TIMEOUT_S

SPAM_FILE_NAME = "SMSSpamCollection"  # the data file inside the UCI zip (label<TAB>text lines, no header)


# ----------------------------------------------------------------------------- the data (6.2-6.3)


class SpamDataUnavailableError(urllib.error.URLError):
    """The SMS Spam Collection is not on disk and could not be downloaded.

    A `URLError` (an `OSError`), so code that catches a failed download to try another URL, as the
    book's own test does, still works.
    """

    def __str__(self) -> str:
        return str(self.reason)


def _download(url: str, zip_path: Path) -> None:
    """Save `url` at `zip_path`; a partial download never replaces it."""
    partial = zip_path.with_name(zip_path.name + ".part")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out_file:
            out_file.write(response.read())
        os.replace(partial, zip_path)
    finally:
        if partial.exists():
            partial.unlink()


def _extract(zip_path: Path, extracted_path: Path) -> None:
    """Unzip `zip_path` into `extracted_path`."""
    try:
        with zipfile.ZipFile(zip_path, "r") as zip_ref:
            zip_ref.extractall(extracted_path)
    except zipfile.BadZipFile as err:
        raise zipfile.BadZipFile(f"{zip_path} is not a zip file; delete it, or put the UCI zip there") from err


def download_and_unzip_spam_data(
    url: str, zip_path: str | os.PathLike, extracted_path: str | os.PathLike, data_file_path: str | os.PathLike
) -> None:
    """Put the SMS Spam Collection at `data_file_path` (the book: download the UCI zip, unzip, rename).

    In order: a file already at `data_file_path` is kept (nothing else happens, as in the book); an
    already extracted `extracted_path/SMSSpamCollection` is renamed to `data_file_path`; a zip already
    at `zip_path` is extracted and its `SMSSpamCollection` renamed. Only when none of them is there is
    `url` downloaded to `zip_path` (giving up after `DOWNLOAD_TIMEOUT_S` without an answer).

    Args:
        url: Where the zip is downloaded from (the book: the UCI archive, or its backup).
        zip_path: Where the zip is saved (or already lies).
        extracted_path: The folder the zip is extracted into.
        data_file_path: Where the data file ends up (the book: `extracted_path/SMSSpamCollection.tsv`).

    Raises:
        SpamDataUnavailableError: The file is not on disk and the download failed (the original error
            is chained); the message says where to put the file.
        FileNotFoundError: The zip holds no `SMSSpamCollection`.
        zipfile.BadZipFile: The file at `zip_path` is not a zip.
    """
    data_file_path = Path(data_file_path)
    if data_file_path.exists():
        print(f"{data_file_path} already exists. Skipping download and extraction.")
        return
    zip_path, extracted_path = Path(zip_path), Path(extracted_path)
    original_file_path = extracted_path / SPAM_FILE_NAME
    if original_file_path.exists():
        source = f"Found {original_file_path}"
    elif zip_path.exists():
        _extract(zip_path, extracted_path)
        source = f"Extracted {zip_path}"
    else:
        try:
            _download(url, zip_path)
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts; ValueError: not a URL
            raise SpamDataUnavailableError(
                f"Could not download the SMS Spam Collection from {url} ({err}). Without a network, put the "
                f"SMS Spam Collection file (label<TAB>text lines) at {data_file_path} (e.g. a copy of "
                f"../shared/data/{SPAM_FILE_NAME}), or the UCI zip at {zip_path}."
            ) from err
        _extract(zip_path, extracted_path)
        source = "File downloaded"
    if not original_file_path.exists():
        raise FileNotFoundError(f"{zip_path} holds no {SPAM_FILE_NAME}; is it the UCI SMS Spam Collection zip?")
    data_file_path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(original_file_path, data_file_path)  # the book adds the .tsv extension
    print(f"{source} and saved as {data_file_path}")


def create_balanced_dataset(df: pd.DataFrame) -> pd.DataFrame:
    """As many "ham" rows as there are "spam" rows (the book's undersampling, 747 + 747 on the UCI file).

    The ham rows are pandas' `sample(num_spam, random_state=123)`, the book's draw, so the rows are the
    book's; the result lists them first, then every spam row, keeping `df`'s index.

    Args:
        df: The table with a `Label` column of "ham"/"spam" (and the `Text`).
    """
    spam = df[df["Label"] == "spam"]
    ham_subset = df[df["Label"] == "ham"].sample(spam.shape[0], random_state=123)
    return pd.concat([ham_subset, spam])


def random_split(
    df: pd.DataFrame, train_frac: float, validation_frac: float
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Shuffle `df` (the book's `random_state=123`) and cut it into training, validation and test parts.

    The training part gets `int(n * train_frac)` rows, the validation part `int(n * validation_frac)`,
    the test part the rest: 1,045 / 149 / 300 for the book's 0.7 / 0.1 on 1,494 balanced rows. The
    index is reset (0 to n - 1 across the three parts).
    """
    df = df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * train_frac)
    validation_end = train_end + int(len(df) * validation_frac)
    return df[:train_end], df[train_end:validation_end], df[validation_end:]


class SpamDataset(Dataset):
    """The book's dataset: a CSV of `Label` (0/1) and `Text`, every text encoded and padded to one length.

    Texts longer than `max_length` keep their first `max_length` tokens; shorter ones are padded on the
    right with `pad_token_id`. `dataset[i]` is `(input_ids, label)`, two long tensors.

    Args:
        csv_file: The CSV that `random_split`'s parts were saved to (`to_csv(path, index=None)`).
        tokenizer: The book's tiktoken encoding or a transformers tokenizer (no special tokens added).
        max_length: The common length; None: the longest encoded text (then `self.max_length` is it,
            the number to pass to the validation and test sets).
        pad_token_id: The padding id (GPT-2's `<|endoftext|>`).
    """

    def __init__(
        self, csv_file: str | os.PathLike, tokenizer: Any, max_length: int | None = None, pad_token_id: int = 50256
    ) -> None:
        self.data = pd.read_csv(csv_file)
        self.encoded_texts = encode_texts(tokenizer, list(self.data["Text"]))  # the book's tokenizer.encode(text)
        if max_length is None:
            self.max_length = self._longest_encoded_length()
        else:
            self.max_length = max_length
            self.encoded_texts = [encoded_text[:max_length] for encoded_text in self.encoded_texts]
        self.encoded_texts = [
            encoded_text + [pad_token_id] * (self.max_length - len(encoded_text)) for encoded_text in self.encoded_texts
        ]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self.data.iloc[index]["Label"]
        return torch.tensor(self.encoded_texts[index], dtype=torch.long), torch.tensor(label, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.data)

    def _longest_encoded_length(self) -> int:
        return max((len(encoded_text) for encoded_text in self.encoded_texts), default=0)


# ----------------------------------------------------------------------------- finetuning (6.5-6.7)


def _class_logits(model: nn.Module, input_batch: torch.Tensor) -> torch.Tensor:
    """`(b, num_classes)`: the logits of the last position (the book), or a classifier's own logits."""
    logits = logits_of(model, input_batch)
    return logits if logits.dim() == 2 else logits[:, -1, :]


def calc_accuracy_loader(data_loader: Any, model: nn.Module, device: Any, num_batches: int | None = None) -> float:
    """Share of correct predictions on the first `num_batches` batches (all by default), in eval mode.

    The prediction is the argmax of the last position's logits. NaN for a loader without examples (the
    book divides by zero).
    """
    model.eval()
    correct_predictions, num_examples = 0, 0
    num_batches = len(data_loader) if num_batches is None else min(num_batches, len(data_loader))
    for i, (input_batch, target_batch) in enumerate(data_loader):
        if i >= num_batches:
            break
        input_batch, target_batch = input_batch.to(device), target_batch.to(device)
        with torch.no_grad():
            predicted_labels = torch.argmax(_class_logits(model, input_batch), dim=-1)
        num_examples += predicted_labels.shape[0]
        correct_predictions += (predicted_labels == target_batch).sum().item()
    return correct_predictions / num_examples if num_examples else float("nan")


def calc_loss_batch(
    input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module, device: Any
) -> torch.Tensor:
    """Mean cross-entropy of the last position's logits against the class labels of one batch."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    return torch.nn.functional.cross_entropy(_class_logits(model, input_batch), target_batch)


def calc_loss_loader(data_loader: Any, model: nn.Module, device: Any, num_batches: int | None = None) -> float:
    """Average batch loss over the first `num_batches` batches (all by default); NaN for an empty loader."""
    return average_batch_loss(calc_loss_batch, data_loader, model, device, num_batches)


def evaluate_model(
    model: nn.Module, train_loader: Any, val_loader: Any, device: Any, eval_iter: int
) -> tuple[float, float]:
    """Training and validation loss on the first `eval_iter` batches of each loader, in eval mode."""
    return train_and_val_loss(calc_loss_batch, model, train_loader, val_loader, device, eval_iter)


def train_classifier_simple(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    optimizer: torch.optim.Optimizer,
    device: Any,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
) -> tuple[list[float], list[float], list[float], list[float], int]:
    """The book's finetuning loop (chapter 6.7).

    Every `eval_freq` steps it prints the loss on the first `eval_iter` batches of both loaders; after
    each epoch, the accuracy on the first `eval_iter` batches of both.

    Returns:
        The training and validation losses at each evaluation, the training and validation accuracies
        after each epoch, and the number of training examples seen.
    """
    train_losses, val_losses, train_accs, val_accs = [], [], [], []
    examples_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # reset the gradients of the previous step
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            examples_seen += input_batch.shape[0]  # examples, not tokens as in chapter 5
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        train_accuracy = calc_accuracy_loader(train_loader, model, device, num_batches=eval_iter)
        val_accuracy = calc_accuracy_loader(val_loader, model, device, num_batches=eval_iter)
        print(f"Training accuracy: {train_accuracy * 100:.2f}% | ", end="")
        print(f"Validation accuracy: {val_accuracy * 100:.2f}%")
        train_accs.append(train_accuracy)
        val_accs.append(val_accuracy)
    return train_losses, val_losses, train_accs, val_accs, examples_seen


def plot_values(
    epochs_seen: Sequence[float],
    examples_seen: Sequence[float],
    train_values: Sequence[float],
    val_values: Sequence[float],
    label: str = "loss",
) -> Any:
    """Plot training and validation values against epochs (examples seen on a second axis).

    Saves `{label}-plot.pdf` in the working directory, as the book does. Drawn on a matplotlib
    `Figure` rather than pyplot, so it needs no display and never blocks.

    Returns:
        The `matplotlib.figure.Figure` (a notebook shows it when it is a cell's last value).
    """
    from matplotlib.figure import Figure  # at call time: only the plot needs matplotlib

    fig = Figure(figsize=(5, 3))
    ax1 = fig.subplots()
    ax1.plot(epochs_seen, train_values, label=f"Training {label}")
    ax1.plot(epochs_seen, val_values, linestyle="-.", label=f"Validation {label}")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel(label.capitalize())
    ax1.legend()
    ax2 = ax1.twiny()  # a second x-axis sharing the y-axis
    ax2.plot(examples_seen, train_values, alpha=0)  # invisible: aligns the ticks
    ax2.set_xlabel("Examples seen")
    fig.tight_layout()
    fig.savefig(f"{label}-plot.pdf")
    return fig


def classify_review(
    text: str, model: nn.Module, tokenizer: Any, device: Any, max_length: int | None = None, pad_token_id: int = 50256
) -> str:
    """Classify one text with the finetuned model: "spam" or "not spam" (chapter 6.8).

    The text is encoded, cut to `max_length` tokens (at most the model's context length) and padded to
    that length with `pad_token_id`, as the training data was; the logits of the last position decide.

    Args:
        text: The text.
        model: The finetuned classifier (class 1 = spam).
        tokenizer: The tokenizer the model was finetuned with.
        device: Where the model is.
        max_length: The training set's `max_length`; None: no padding, only the context-length cut.
        pad_token_id: The padding id.
    """
    model.eval()
    supported_context_length = context_size_of(model)  # the book's model.pos_emb.weight.shape[0]
    width = supported_context_length if max_length is None else min(max_length, supported_context_length)
    input_ids = encode(tokenizer, text)[:width]  # the book's tokenizer.encode(text), cut to fit
    if max_length is not None:
        input_ids += [pad_token_id] * (width - len(input_ids))
    input_tensor = torch.tensor(input_ids, device=device).unsqueeze(0)  # add the batch dimension
    with torch.no_grad():
        predicted_label = torch.argmax(_class_logits(model, input_tensor), dim=-1).item()
    return "spam" if predicted_label == 1 else "not spam"


__all__ = [
    "SpamDataUnavailableError",
    "SpamDataset",
    "calc_accuracy_loader",
    "calc_loss_batch",
    "calc_loss_loader",
    "classify_review",
    "create_balanced_dataset",
    "download_and_unzip_spam_data",
    "evaluate_model",
    "plot_values",
    "random_split",
    "train_classifier_simple",
]
