"""Chapter 5 of the book: pretraining and loading OpenAI's GPT-2 weights (`llms_from_scratch.ch05`).

Every function keeps the book's name, signature and printed output. They take the book's tiktoken
encoding and this package's tokenizers (transformers, `SimpleTokenizer`) alike, and the book's
`GPTModel` as well as any ScratchGPT/transformers causal LM (whose output object gives the logits).

Beyond the book: `plot_losses` saves `loss-plot.pdf` as the book does but shows the figure only where
matplotlib can (headless runs just save it); `download_file` skips a file that already exists without
touching the network and never waits forever; `download_and_load_gpt2` and
`load_gpt2_params_from_tf_ckpt` read OpenAI's TensorFlow checkpoint and say in one line what to do
when TensorFlow is missing (`scratchgpt convert-gpt2` loads a Hugging Face GPT-2 folder instead).
"""

from __future__ import annotations

import json
import os
import urllib.request
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..generation import generate_text
from ._common import average_batch_loss, context_size_of, encode_text, logits_of, train_and_val_loss
from .ch04 import generate_text_simple

DOWNLOAD_TIMEOUT_S = 60  # seconds without an answer before a download attempt gives up
GPT2_SIZES = ("124M", "355M", "774M", "1558M")
GPT2_FILES = (
    "checkpoint",
    "encoder.json",
    "hparams.json",
    "model.ckpt.data-00000-of-00001",
    "model.ckpt.index",
    "model.ckpt.meta",
    "vocab.bpe",
)
GPT2_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2/models"
GPT2_BACKUP_URL = "https://f001.backblazeb2.com/file/LLMs-from-scratch/gpt2"

# The book's `generate` (chapter 5.3): temperature, top-k and an end-of-sequence id, over any causal LM.
generate = generate_text


# ----------------------------------------------------------------------------- training (5.1-5.2)


def text_to_token_ids(text: str, tokenizer: Any) -> torch.Tensor:
    """`(1, T)` token ids of `text` (`<|endoftext|>` allowed), for a tiktoken or transformers tokenizer."""
    return torch.tensor(encode_text(tokenizer, text)).unsqueeze(0)  # add the batch dimension


def token_ids_to_text(token_ids: torch.Tensor, tokenizer: Any) -> str:
    """The text of `(1, T)` (or `(T,)`) token ids."""
    return tokenizer.decode(token_ids.squeeze(0).tolist())  # drop the batch dimension


def calc_loss_batch(
    input_batch: torch.Tensor, target_batch: torch.Tensor, model: nn.Module, device: Any
) -> torch.Tensor:
    """Mean next-token cross-entropy of one batch; `target_batch` holds the book's pre-shifted targets."""
    input_batch, target_batch = input_batch.to(device), target_batch.to(device)
    logits = logits_of(model, input_batch)  # (b, T, vocab)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), target_batch.flatten())


def calc_loss_loader(data_loader: Any, model: nn.Module, device: Any, num_batches: int | None = None) -> float:
    """Average batch loss over the first `num_batches` batches (all by default); NaN for an empty loader."""
    return average_batch_loss(calc_loss_batch, data_loader, model, device, num_batches)


def evaluate_model(
    model: nn.Module, train_loader: Any, val_loader: Any, device: Any, eval_iter: int
) -> tuple[float, float]:
    """Training and validation loss on the first `eval_iter` batches of each loader, in eval mode."""
    return train_and_val_loss(calc_loss_batch, model, train_loader, val_loader, device, eval_iter)


def generate_and_print_sample(model: nn.Module, tokenizer: Any, device: Any, start_context: str) -> None:
    """Print 50 greedily generated tokens after `start_context` on one line."""
    model.eval()
    context_size = context_size_of(model)  # the book's model.pos_emb.weight.shape[0]
    encoded = text_to_token_ids(start_context, tokenizer).to(device)
    with torch.no_grad():
        token_ids = generate_text_simple(model=model, idx=encoded, max_new_tokens=50, context_size=context_size)
    print(token_ids_to_text(token_ids, tokenizer).replace("\n", " "))  # compact print format
    model.train()


def train_model_simple(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any,
    optimizer: torch.optim.Optimizer,
    device: Any,
    num_epochs: int,
    eval_freq: int,
    eval_iter: int,
    start_context: str,
    tokenizer: Any,
) -> tuple[list[float], list[float], list[int]]:
    """The book's pretraining loop (chapter 5.2).

    Every `eval_freq` steps it prints the loss on the first `eval_iter` batches of both loaders; after
    each epoch it prints a sample continuing `start_context`.

    Returns:
        The training losses, validation losses and tokens seen at each evaluation.
    """
    train_losses, val_losses, track_tokens_seen = [], [], []
    tokens_seen, global_step = 0, -1
    for epoch in range(num_epochs):
        model.train()
        for input_batch, target_batch in train_loader:
            optimizer.zero_grad()  # reset the gradients of the previous step
            loss = calc_loss_batch(input_batch, target_batch, model, device)
            loss.backward()
            optimizer.step()
            tokens_seen += input_batch.numel()
            global_step += 1
            if global_step % eval_freq == 0:
                train_loss, val_loss = evaluate_model(model, train_loader, val_loader, device, eval_iter)
                train_losses.append(train_loss)
                val_losses.append(val_loss)
                track_tokens_seen.append(tokens_seen)
                print(f"Ep {epoch + 1} (Step {global_step:06d}): Train loss {train_loss:.3f}, Val loss {val_loss:.3f}")
        generate_and_print_sample(model, tokenizer, device, start_context)
    return train_losses, val_losses, track_tokens_seen


def plot_losses(
    epochs_seen: Sequence[float], tokens_seen: Sequence[int], train_losses: Sequence[float], val_losses: Sequence[float]
) -> None:
    """Plot both losses against epochs (and tokens seen on a second axis); save `loss-plot.pdf` in the cwd."""
    import matplotlib.pyplot as plt  # at call time: only the plot needs it
    from matplotlib.ticker import MaxNLocator

    fig, ax1 = plt.subplots(figsize=(5, 3))
    ax1.plot(epochs_seen, train_losses, label="Training loss")
    ax1.plot(epochs_seen, val_losses, linestyle="-.", label="Validation loss")
    ax1.set_xlabel("Epochs")
    ax1.set_ylabel("Loss")
    ax1.legend(loc="upper right")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))  # integer epochs only
    ax2 = ax1.twiny()  # a second x-axis sharing the y-axis
    ax2.plot(tokens_seen, train_losses, alpha=0)  # invisible: aligns the ticks
    ax2.set_xlabel("Tokens seen")
    fig.tight_layout()
    plt.savefig("loss-plot.pdf")
    with warnings.catch_warnings():  # a headless (non-interactive) backend cannot show: saving is enough
        warnings.filterwarnings("ignore", message=".*non-interactive.*")
        plt.show()


# ----------------------------------------------------------------------------- OpenAI's weights (5.5)


def assign(left: torch.Tensor, right: Any) -> nn.Parameter:
    """A new parameter holding `right` (a numpy array or tensor) after checking it has `left`'s shape."""
    if tuple(left.shape) != tuple(right.shape):
        raise ValueError(f"Shape mismatch. Left: {left.shape}, Right: {right.shape}")
    return nn.Parameter(torch.as_tensor(right).detach().clone())


def load_weights_into_gpt(gpt: nn.Module, params: dict[str, Any]) -> None:
    """Copy OpenAI's GPT-2 weights (`params` of `download_and_load_gpt2`) into the book's model.

    GPT-2 keeps q, k and v in one `c_attn` matrix `(emb, 3 * emb)` used as `x @ W`; the book's
    `nn.Linear`s hold `(out, in)` weights, so it is split in three and every matrix transposed.
    The output head gets a copy of the token embedding (GPT-2 ties them). The model needs
    `qkv_bias=True`.
    """
    body = getattr(gpt, "transformer", gpt)  # this package's model keeps the parts under `transformer`
    body.pos_emb.weight = assign(body.pos_emb.weight, params["wpe"])
    body.tok_emb.weight = assign(body.tok_emb.weight, params["wte"])
    for b, block_params in enumerate(params["blocks"]):
        block = body.trf_blocks[b]
        attn, mlp = block_params["attn"], block_params["mlp"]
        q_w, k_w, v_w = np.split(attn["c_attn"]["w"], 3, axis=-1)  # each (emb, emb)
        q_b, k_b, v_b = np.split(attn["c_attn"]["b"], 3, axis=-1)
        qkv = ((block.att.W_query, q_w, q_b), (block.att.W_key, k_w, k_b), (block.att.W_value, v_w, v_b))
        for linear, w, bias in qkv:
            linear.weight = assign(linear.weight, w.T)
            linear.bias = assign(linear.bias, bias)
        for linear, conv in ((block.att.out_proj, attn["c_proj"]), (block.ff.layers[0], mlp["c_fc"])):
            linear.weight = assign(linear.weight, conv["w"].T)
            linear.bias = assign(linear.bias, conv["b"])
        block.ff.layers[2].weight = assign(block.ff.layers[2].weight, mlp["c_proj"]["w"].T)
        block.ff.layers[2].bias = assign(block.ff.layers[2].bias, mlp["c_proj"]["b"])
        for norm, ln in ((block.norm1, block_params["ln_1"]), (block.norm2, block_params["ln_2"])):
            norm.scale = assign(norm.scale, ln["g"])
            norm.shift = assign(norm.shift, ln["b"])
    body.final_norm.scale = assign(body.final_norm.scale, params["g"])
    body.final_norm.shift = assign(body.final_norm.shift, params["b"])
    gpt.out_head.weight = assign(gpt.out_head.weight, params["wte"])


def _tensorflow(what: str) -> Any:
    """Import TensorFlow, or raise a one-line ImportError naming the alternative."""
    try:
        import tensorflow as tf
    except ImportError:
        raise ImportError(
            f"{what} reads OpenAI's TensorFlow checkpoint and needs TensorFlow (pip install tensorflow); "
            "without it, `scratchgpt convert-gpt2` loads a Hugging Face GPT-2 folder instead"
        ) from None
    return tf


def download_file(url: str, destination: str, backup_url: str | None = None) -> None:
    """Download `url` to `destination` (trying `backup_url` if the first fails), with a progress bar.

    A file already at `destination` is kept and nothing is downloaded. A failed download prints the
    book's message and returns (as the book does) after at most `DOWNLOAD_TIMEOUT_S` per attempt
    without an answer; a partial download never replaces `destination`.
    """
    if os.path.exists(destination) and os.path.getsize(destination) > 0:
        print(f"File already exists: {destination}")
        return

    def attempt(download_url: str) -> None:
        partial = destination + ".part"
        try:
            with urllib.request.urlopen(download_url, timeout=DOWNLOAD_TIMEOUT_S) as response:
                file_size = int(response.headers.get("Content-Length", 0))
                desc = os.path.basename(download_url)
                with tqdm(total=file_size, unit="iB", unit_scale=True, desc=desc) as bar, open(partial, "wb") as f:
                    while chunk := response.read(1 << 16):
                        f.write(chunk)
                        bar.update(len(chunk))
            os.replace(partial, destination)
        finally:
            if os.path.exists(partial):
                os.remove(partial)

    for candidate in (url, backup_url):
        if candidate is None:
            continue
        try:
            attempt(candidate)
            return
        except (OSError, ValueError) as err:  # URLError, HTTPError, timeouts; ValueError: not a URL
            print(f"Download of {candidate} failed: {err}")
    print(
        f"Failed to download from both primary URL ({url})"
        f"{' and backup URL (' + backup_url + ')' if backup_url else ''}."
        "\nCheck your internet connection or the file availability.\n"
        "For help, visit: https://github.com/rasbt/LLMs-from-scratch/discussions/273"
    )


def load_gpt2_params_from_tf_ckpt(ckpt_path: str, settings: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's TensorFlow checkpoint as the book's nested dict of numpy arrays.

    Top level: `wte`, `wpe`, `g`, `b` (final norm) and `blocks`, one dict per layer
    (`attn.c_attn.w`, `ln_1.g`, `mlp.c_fc.b`, ...).
    """
    tf = _tensorflow("load_gpt2_params_from_tf_ckpt")
    params: dict[str, Any] = {"blocks": [{} for _ in range(settings["n_layer"])]}
    for name, _ in tf.train.list_variables(ckpt_path):
        array = np.squeeze(tf.train.load_variable(ckpt_path, name))  # drop singleton dimensions
        parts = name.split("/")[1:]  # skip the "model/" prefix
        target = params
        if parts[0].startswith("h"):  # "h0", "h1", ...: a transformer block
            target = params["blocks"][int(parts[0][1:])]
        for key in parts[1:-1]:
            target = target.setdefault(key, {})
        target[parts[-1]] = array
    return params


def download_and_load_gpt2(model_size: str, models_dir: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Download OpenAI's GPT-2 checkpoint (`124M`, `355M`, `774M` or `1558M`) and read its weights.

    Files already in `models_dir/model_size` are not downloaded again.

    Returns:
        `settings` (hparams.json: `n_vocab`, `n_ctx`, `n_embd`, `n_head`, `n_layer`) and `params`
        (see `load_gpt2_params_from_tf_ckpt`).

    Raises:
        ImportError: TensorFlow is not installed.
        ValueError: An unknown model size.
        FileNotFoundError: A file could not be downloaded.
    """
    tf = _tensorflow("download_and_load_gpt2")
    if model_size not in GPT2_SIZES:
        raise ValueError(f"Model size not in {GPT2_SIZES}")
    model_dir = os.path.join(models_dir, model_size)
    os.makedirs(model_dir, exist_ok=True)
    for filename in GPT2_FILES:
        destination = os.path.join(model_dir, filename)
        download_file(
            f"{GPT2_BASE_URL}/{model_size}/{filename}", destination, f"{GPT2_BACKUP_URL}/{model_size}/{filename}"
        )
    missing = [name for name in GPT2_FILES if not os.path.exists(os.path.join(model_dir, name))]
    if missing:
        raise FileNotFoundError(f"{model_dir}: could not download {', '.join(missing)}")
    with open(os.path.join(model_dir, "hparams.json"), encoding="utf-8") as f:
        settings = json.load(f)
    params = load_gpt2_params_from_tf_ckpt(tf.train.latest_checkpoint(model_dir), settings)
    return settings, params


__all__ = [
    "assign",
    "calc_loss_batch",
    "calc_loss_loader",
    "download_and_load_gpt2",
    "download_file",
    "evaluate_model",
    "generate",
    "generate_and_print_sample",
    "generate_text_simple",
    "load_gpt2_params_from_tf_ckpt",
    "load_weights_into_gpt",
    "plot_losses",
    "text_to_token_ids",
    "token_ids_to_text",
    "train_model_simple",
]
