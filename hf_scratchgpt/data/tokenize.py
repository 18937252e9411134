"""Exact, fast tokenization of long and streamed texts.

Long texts are cut where a cut cannot change the result and the pieces encoded in parallel;
streamed text is tokenized piece by piece with the same guarantee: the ids always equal those of
the whole text encoded at once. A byte-level BPE built as GPT-2's (its merges numbered after the 256
bytes) is encoded by tiktoken when it is installed (`tiktoken_engine`): the same ids, about three
times the speed of the `tokenizers` library on this kind of text.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from datasets.fingerprint import Hasher

# A space between two non-space characters is always a pre-token boundary of GPT-2's byte-level
# regex (the space starts the next piece), and the pieces on both sides read the same when the text
# is cut there: tokenizing the parts gives exactly the ids of the whole.
_SAFE_CUT = re.compile(r"(?<=\S) (?=\S)")
PIECE_CHARS = 1 << 15  # long texts are cut into pieces of about this size and encoded in parallel
BATCH_PIECES = 64  # pieces per parallel encode call
TIKTOKEN_MIN_CHARS = 256  # texts shorter than this on average go to `tokenizers` (faster there, measured)
# GPT-2's pre-tokenizer regex, as `tokenizers`' ByteLevel(use_regex=True) applies it
_GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
_ENGINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # tokenizer -> (its size, tiktoken or None)


def _byte_level_backend(tokenizer: Any) -> Any:
    """The Rust tokenizer when it is GPT-2 style byte-level BPE (safe to cut at spaces), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.normalizer is not None or backend.pre_tokenizer is None or _spaced_added(backend):
        return None
    desc = repr(backend.pre_tokenizer)
    ok = desc.startswith("ByteLevel(") and "add_prefix_space=False" in desc and "use_regex=True" in desc
    return backend if ok else None


def _spaced_added(backend: Any) -> bool:
    """Whether an added token holds whitespace: a cut at a space could split it, so no text is cut."""
    return any(any(c.isspace() for c in t.content) for t in backend.get_added_tokens_decoder().values())


def _gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet read back: each byte's printable stand-in character -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("\xa1"), ord("\xac") + 1), *range(ord("\xae"), 256)]
    others = [b for b in range(256) if b not in printable]
    stand_in = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    return {char: b for b, char in stand_in.items()}


def tiktoken_engine(tokenizer: Any) -> Any | None:
    """A `tiktoken.Encoding` that gives exactly this tokenizer's ids, or None where there is none.

    There is one for a byte-level BPE (GPT-2's pre-tokenizer, no normalizer) built the way GPT-2's
    is: the 256 single bytes are ids 0-255 and merge `n` makes token `256 + n`, so a merge's rank is
    its token's id. That is the construction tiktoken's own `gpt2` encoding reads from GPT-2's files
    (`encoder.json`, `vocab.bpe`). Added tokens become tiktoken's special tokens, matched anywhere in
    the text as `tokenizers` matches them; one with lstrip/rstrip/single-word rules means no engine.
    Tokenizers trained by `train_bpe_tokenizer` number their merges after the special tokens, so they
    keep the `tokenizers` library. Built once per tokenizer (and again if tokens are added); None
    when tiktoken is not installed.
    """
    backend = _byte_level_backend(tokenizer)
    return None if backend is None else _tiktoken_for(tokenizer, backend)


def _tiktoken_for(tokenizer: Any, backend: Any) -> Any | None:
    """`tiktoken_engine` for a tokenizer whose byte-level `backend` is already known."""
    key = (len(tokenizer), id(backend))
    try:
        known = _ENGINES.get(tokenizer)
    except TypeError:  # not weak-referenceable
        return None
    if known is not None and known[0] == key:
        return known[1]
    engine = _build_tiktoken(json.loads(backend.to_str()))
    _ENGINES[tokenizer] = (key, engine)
    return engine


def _build_tiktoken(spec: dict) -> Any | None:
    """`tiktoken_engine`'s Encoding from a `tokenizers` JSON spec, or None (see there for when)."""
    try:
        tiktoken = importlib.import_module("tiktoken")  # optional (the `book` extra)
    except ImportError:
        return None
    model, added = spec["model"], spec.get("added_tokens") or []
    extras = ("dropout", "byte_fallback", "ignore_merges", "continuing_subword_prefix", "end_of_word_suffix")
    plain = model.get("type") == "BPE" and not any(model.get(k) for k in extras)
    if not plain or any(t["lstrip"] or t["rstrip"] or t["single_word"] for t in added):
        return None
    specials = {t["content"]: t["id"] for t in added}
    to_byte = _gpt2_byte_decoder()
    ranks = {}
    for token, i in model["vocab"].items():
        if token not in specials:
            if any(char not in to_byte for char in token):
                return None
            ranks[bytes(to_byte[char] for char in token)] = i
    merges = model["merges"]
    if len(ranks) != 256 + len(merges) or {ranks.get(bytes([b])) for b in range(256)} != set(range(256)):
        return None
    for n, pair in enumerate(merges):
        left, right = pair if isinstance(pair, list) else pair.split(" ")
        if model["vocab"].get(left + right) != 256 + n:
            return None
    return tiktoken.Encoding(
        "hf_scratchgpt-byte-level-bpe", pat_str=_GPT2_PATTERN, mergeable_ranks=ranks, special_tokens=specials
    )


def _encode_threads() -> int:
    """tiktoken's threads, set as for `tokenizers`: 1 when `TOKENIZERS_PARALLELISM` is off, else
    `RAYON_NUM_THREADS`, else one per CPU."""
    if os.environ.get("TOKENIZERS_PARALLELISM", "").lower() in ("0", "false", "no", "off"):
        return 1
    if os.environ.get("RAYON_NUM_THREADS", "").isdigit() and int(os.environ["RAYON_NUM_THREADS"]) > 0:
        return int(os.environ["RAYON_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def encode_truncated(tokenizer: Any, texts: list[str], max_length: int | None) -> tuple[list[list[int]], list[int]]:
    """Token ids as `tokenizer(text)` gives them (its special tokens included) and each text's full length.

    Texts longer than `max_length` keep their first tokens and the tokenizer's special tokens (its
    truncation, as a pipeline's `truncation=True`). The tokenizer's truncation setting is left as it
    was: a truncating call switches it on in the backend, where `encode_texts` would then meet it.
    """
    ids = tokenizer(texts, verbose=False)["input_ids"]
    lengths = [len(x) for x in ids]
    long = [i for i, n in enumerate(lengths) if max_length is not None and n > max_length]
    if long:
        backend = tokenizer.backend_tokenizer
        before = backend.truncation
        try:
            cut = tokenizer([texts[i] for i in long], truncation=True, max_length=max_length, verbose=False)
        finally:
            if before is None:
                backend.no_truncation()
            else:
                backend.enable_truncation(**before)
        for i, x in zip(long, cut["input_ids"]):
            ids[i] = x
    return ids, lengths


def split_at_safe_spaces(text: str, piece_chars: int = PIECE_CHARS) -> list[str]:
    """Cut `text` about every `piece_chars` characters, just before a space between two non-spaces."""
    pieces, start = [], 0
    while len(text) - start > piece_chars:
        match = _SAFE_CUT.search(text, start + piece_chars)
        if match is None:
            break
        pieces.append(text[start : match.start()])
        start = match.start()
    pieces.append(text[start:])
    return pieces


def _plan(tokenizer: Any, texts: list[str], engine: str) -> tuple[Any, list[str], list[int], Any]:
    """How `encode_texts` encodes `texts`: the byte-level backend (None: the tokenizer is called as it is),
    the pieces, each piece's text and the tiktoken engine (None: the `tokenizers` library)."""
    if engine not in ("auto", "tokenizers"):
        raise ValueError(f"engine must be 'auto' or 'tokenizers', got {engine!r}")
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one str (for one text: encode(tokenizer, text))")
    backend = _byte_level_backend(tokenizer)
    if backend is None:
        return None, [], [], None
    pieces, owners = [], []
    for i, text in enumerate(texts):
        for piece in split_at_safe_spaces(text):
            pieces.append(piece)
            owners.append(i)
    # many short texts: `tokenizers`' batch call costs less per text than tiktoken's
    long_texts = sum(map(len, pieces)) >= TIKTOKEN_MIN_CHARS * len(pieces)
    fast = _tiktoken_for(tokenizer, backend) if engine == "auto" and long_texts else None
    return backend, pieces, owners, fast


def encoding_engine(tokenizer: Any, texts: list[str], engine: str = "auto") -> str:
    """What `encode_texts(tokenizer, texts, engine=engine)` encodes with: "tiktoken", "tokenizers" (the
    library, on cut pieces), or "tokenizer" (the tokenizer called as it is)."""
    backend, _, _, fast = _plan(tokenizer, texts, engine)
    return "tokenizer" if backend is None else "tokenizers" if fast is None else "tiktoken"


def encode_texts(tokenizer: Any, texts: list[str], as_numpy: bool = False, engine: str = "auto") -> list:
    """Token ids of each text, without added special tokens, exactly as the tokenizer gives them.

    For byte-level BPE, long texts are cut at safe spaces and the pieces encoded in parallel
    batches (a 20 MB string encoded whole is several times slower): by tiktoken where it gives the
    same ids (`tiktoken_engine`: GPT-2's vocabulary) and the texts average `TIKTOKEN_MIN_CHARS` or
    more, else by the `tokenizers` library. Other transformers tokenizers are called as they are;
    anything else needs `encode` (e.g. `SimpleTokenizer`).

    Args:
        tokenizer: The tokenizer.
        texts: The texts.
        as_numpy: Give int64 numpy arrays instead of lists.
        engine: "auto" (tiktoken where it applies), or "tokenizers" to keep the `tokenizers` library.
    """
    backend, pieces, owners, fast = _plan(tokenizer, texts, engine)
    if backend is None:
        if hasattr(tokenizer, "backend_tokenizer"):
            ids = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
        else:
            ids = [tokenizer.encode(t) for t in texts]
        return [np.asarray(x, dtype=np.int64) for x in ids] if as_numpy else ids
    if fast is not None:
        threads = _encode_threads()

        def encode_batch(batch: list[str]) -> list[list[int]]:
            return fast.encode_batch(batch, num_threads=threads, allowed_special="all")
    else:
        batch_fast = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast: no offsets

        def encode_batch(batch: list[str]) -> list[list[int]]:
            return [enc.ids for enc in batch_fast(batch, add_special_tokens=False)]

    parts: list[list[np.ndarray]] = [[] for _ in texts]
    for start in range(0, len(pieces), BATCH_PIECES):  # bounded memory: Encodings are large
        for owner, ids in zip(owners[start : start + BATCH_PIECES], encode_batch(pieces[start : start + BATCH_PIECES])):
            parts[owner].append(np.asarray(ids, dtype=np.int64))
    arrays = [np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]
    return arrays if as_numpy else [a.tolist() for a in arrays]


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of one text without added special tokens (see `encode_texts`)."""
    return encode_texts(tokenizer, [text])[0]


def separator_id(tokenizer: Any) -> int | None:
    """The document separator: the tokenizer's eos (`<|endoftext|>`), if it has one."""
    return getattr(tokenizer, "eos_token_id", None)


def iter_exact_chunk_tokens(chunks: Iterable[str], tokenizer: Any) -> Iterator[list[int]]:
    """Tokenize a text that arrives in pieces, giving exactly the ids of the joined text.

    BPE merges never cross pre-token boundaries, so each piece is cut at a boundary that text still
    to come cannot move (a safe space for byte-level BPE, else a checked pre-token boundary) and the
    rest is carried over. Tokenizers without a pre-tokenizer, or with a normalizer, get the text
    joined whole.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = backend.pre_tokenizer if backend is not None else None
    if pre is None or backend.normalizer is not None or _spaced_added(backend):
        yield encode(tokenizer, "".join(chunks))
        return
    fast = _byte_level_backend(tokenizer) is not None
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = _last_safe_space(text) if fast else _stable_cut(pre, text)
        if cut is None:
            carry = text
            continue
        yield encode(tokenizer, text[:cut])
        carry = text[cut:]
    if carry:
        yield encode(tokenizer, carry)


def _last_safe_space(text: str) -> int | None:
    """Start of the last safe space of `text` (looking at its end first), or None."""
    for lookback in (4096, len(text)):
        starts = [m.start() for m in _SAFE_CUT.finditer(text, max(0, len(text) - lookback))]
        if starts and starts[-1] > 0:
            return starts[-1]
    return None


def _stable_cut(pre: Any, text: str) -> int | None:
    """A pre-token boundary of `text` before which `text[:cut]` pre-tokenizes as inside `text`.

    The last pre-tokens may change with text still to come, and cutting can change the one before
    the cut (a regex lookahead: "\\n\\n" before a word splits in two, at the end it stays whole), so
    candidates are checked by pre-tokenizing the few pieces before them again.
    """
    pieces = pre.pre_tokenize_str(text)
    for back in range(2, min(len(pieces), 8)):
        cut = pieces[-back][1][0]
        first = max(0, len(pieces) - back - 4)
        lo = pieces[first][1][0]
        want = [(s - lo, e - lo) for _, (s, e) in pieces[first:-back]]
        if [offsets for _, offsets in pre.pre_tokenize_str(text[lo:cut])] == want and cut > 0:
            return cut
    return None


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of a tokenizer, cheap enough to key `datasets` caches with.

    (Letting `datasets` pickle-hash a 50k-entry tokenizer costs more than tokenizing megabytes.)
    """
    h = hashlib.sha256(type(tokenizer).__qualname__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
        h.update(json.dumps([str(tokenizer.eos_token), getattr(tokenizer, "eos_token_id", None)]).encode())
    elif hasattr(tokenizer, "str_to_int"):
        h.update(json.dumps(sorted(tokenizer.str_to_int.items())).encode())
    else:
        h.update(Hasher.hash(tokenizer).encode())
    return h.hexdigest()
