"""The book's own API (`llms_from_scratch`), backed by this package's classes.

Swap the import line of a chapter's code and it runs unchanged, with the same numbers::

    from hf_scratchgpt.book.ch04 import GPTModel, generate_text_simple  # was: from llms_from_scratch.ch04 ...

`GPTModel(GPT_CONFIG_124M)` is a `ScratchGPTForCausalLM`: `model(in_idx)` returns the logits tensor
as in the book, while `save_pretrained`, `generate()`, pipelines and peft work on it too.

Modules, each with the public names and signatures of `llms_from_scratch` 1.0.19's module of the same
name: `ch02` (data loader), `ch03` (attention), `ch04` (the model), `ch05` (training, loading GPT-2
weights), `ch06` (the spam data, finetuning the model as a classifier), `ch07` (the instruction data,
its prompt, dataset and collate functions, scoring responses with an Ollama model), `appendix_d`
(warmup, cosine decay, clipping), `appendix_e` (the book's LoRA), `generate`, `kv_cache.{gpt2,
generate, utils}` (the KV-cache model and generation).

Offline tiktoken: the book reads GPT-2's tokenizer with `tiktoken.get_encoding("gpt2")`, which
downloads `encoder.json` and `vocab.bpe`. `use_local_gpt2_files(folder)` puts local copies of the two
files where tiktoken looks for them, so the book's unchanged code works without a network::

    from hf_scratchgpt.book import use_local_gpt2_files
    use_local_gpt2_files("../shared/data/gpt2")  # a folder with encoder.json + vocab.bpe
    tiktoken.get_encoding("gpt2").encode("Hello, I am")  # [15496, 11, 314, 716], no download
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

# The two files `tiktoken.get_encoding("gpt2")` fetches; its cache names each `sha1(url)`.
TIKTOKEN_GPT2_URLS = {
    "encoder.json": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "vocab.bpe": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}


def use_local_gpt2_files(folder: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """Let `tiktoken.get_encoding("gpt2")` read GPT-2's tokenizer files from `folder`, offline.

    Copies `encoder.json` and `vocab.bpe` into a tiktoken cache directory under the names tiktoken
    looks for (the sha1 of each download URL) and points `$TIKTOKEN_CACHE_DIR` at it. tiktoken still
    checks the files' hashes, so only OpenAI's GPT-2 files are accepted.

    Args:
        folder: A folder holding `encoder.json` and `vocab.bpe` (e.g. `../shared/data/gpt2`).
        cache_dir: The cache directory to seed; default `$TIKTOKEN_CACHE_DIR` if set, else tiktoken's
            own default (`<tmp>/data-gym-cache`).

    Returns:
        The cache directory, now in `$TIKTOKEN_CACHE_DIR`.

    Raises:
        FileNotFoundError: `folder` lacks one of the two files.
    """
    folder = Path(folder)
    missing = [name for name in TIKTOKEN_GPT2_URLS if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: no {' or '.join(missing)} (GPT-2's encoder.json and vocab.bpe are needed)")
    if cache_dir is None:
        cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or Path(tempfile.gettempdir()) / "data-gym-cache"
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    for name, url in TIKTOKEN_GPT2_URLS.items():
        target = cache / hashlib.sha1(url.encode()).hexdigest()
        if not target.is_file() or target.read_bytes() != (folder / name).read_bytes():
            shutil.copyfile(folder / name, target)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return cache


__all__ = ["TIKTOKEN_GPT2_URLS", "use_local_gpt2_files"]
