"""Tokenizer benchmark: BPE training time and GPT-2 encoding throughput, ours vs pure-Python BPE and tiktoken.

Two measures, each as cases timed in interleaved rounds (medians with their range):

- BPE training: `hf_scratchgpt.tokenization.train_bpe_tokenizer` (the `tokenizers` library's
  byte-level BPE trainer, wrapped as a transformers tokenizer) vs `PurePythonBPE`, our
  re-implementation of the pure-Python training algorithm of the book's bonus notebook "BPE from
  scratch" (`BPETokenizerSimple.train`). Same text (the-verdict.txt), same vocabulary size.
  Ratio: the pure-Python time / ours. No target.
- GPT-2 encoding, MB/s of UTF-8 text: our GPT-2 tokenizer (`load_gpt2_tokenizer` on the shared
  `encoder.json` + `vocab.bpe`) through the data pipeline's `encode_texts` (which hands GPT-2's
  vocabulary to tiktoken, `tiktoken_engine`; also timed with `engine="tokenizers"`, the `tokenizers`
  library that our own trained vocabularies use, as a second row) vs tiktoken's `gpt2`
  encoding built offline from the same two files (`encode_ordinary` / `encode_ordinary_batch`), on
  (a) one long text: every text of the shared data found (the-verdict, the instruction records,
  the SMS messages) joined and repeated to `--mb` MB; (b) that text cut into 2,000-character
  documents; (c) the 1,100 instruction records, one short document each (a round encodes them several
times, about 1 MB in all, to outlast the clock's noise). Before timing, the ids of
  both are compared on every case; a difference is printed as a warning and recorded in the JSON.
  Ratio: our MB/s / tiktoken's; target 0.5 (ours within 2x of tiktoken).

Threads: `encode_texts` cuts a long text into ~32K-character pieces and encodes them in parallel
(tiktoken's threads or the `tokenizers` Rayon pool: one thread per core unless `RAYON_NUM_THREADS`
says otherwise); tiktoken's `encode_ordinary` is one thread, its `encode_ordinary_batch` a pool of 8
Python threads. `--threads N` sets `RAYON_NUM_THREADS=N` (both of our engines) and tiktoken's batch
threads to N; the JSON records what was in effect. Shortcuts: `tokenizers`' BPE model keeps a cache
of words it has merged (warm after the first call), tiktoken looks a whole pre-token up in its
vocabulary before merging; on the repeated long text both fire more often than on a large varied
corpus.

Usage: python -m benchmarks.bench_tokenizer [--quick] [--out DIR] [--mb 5] [--rounds 5] [--threads N]
Prints a table and writes DIR/tokenizer.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common

EOT = "<|endoftext|>"
DOC_CHARS = 2_000  # the documents of the batched case


class PurePythonBPE:
    """Our re-implementation of the book's pure-Python BPE training algorithm, not the book's code.

    The algorithm of the book's bonus notebook "BPE from scratch" (`BPETokenizerSimple.train`): the
    text becomes a list of ids of single units, then, until the vocabulary is full, every adjacent
    pair of ids is counted, the most frequent pair gets a new id, and its occurrences are replaced
    by that id, left to right. Here the units are the text's UTF-8 bytes (ids 0-255, with
    `<|endoftext|>` as id 256), the same start as the byte-level BPE it is compared with. There is no
    pre-tokenization, so merges may cross word boundaries, and every pair may be merged, even one
    seen once.
    """

    def __init__(self) -> None:
        self.vocab: dict[int, bytes] = {}
        self.merges: dict[tuple[int, int], int] = {}

    def train(self, text: str, vocab_size: int) -> list[int]:
        """Learn merges from `text` until `vocab_size` tokens (or no pair is left); the text's final ids."""
        self.vocab = {i: bytes([i]) for i in range(256)}
        self.vocab[256] = EOT.encode("utf-8")
        self.merges = {}
        ids = list(text.encode("utf-8"))
        for new_id in range(len(self.vocab), vocab_size):
            counts = Counter(zip(ids, ids[1:]))
            if not counts:
                break
            pair = max(counts, key=counts.__getitem__)  # on a tie, the pair seen first in the text
            ids = self._replace(ids, pair, new_id)
            self.merges[pair] = new_id
            self.vocab[new_id] = self.vocab[pair[0]] + self.vocab[pair[1]]
        return ids

    @staticmethod
    def _replace(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
        """`ids` with every non-overlapping occurrence of `pair`, from the left, replaced by `new_id`."""
        first, second = pair
        out: list[int] = []
        i, n = 0, len(ids)
        while i < n:
            if ids[i] == first and i + 1 < n and ids[i + 1] == second:
                out.append(new_id)
                i += 2
            else:
                out.append(ids[i])
                i += 1
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`."""
        return b"".join(self.vocab[i] for i in ids).decode("utf-8")


def shared_texts(shared: Path) -> dict[str, list[str]]:
    """The texts of the shared data this benchmark finds: the-verdict (required), the instruction
    records (one text each) and the SMS messages (one text each), by source."""
    verdict = shared / "the-verdict.txt"
    if not verdict.is_file():
        raise SystemExit(f"{verdict} not found: set SCRATCHGPT_SHARED_DATA to the shared data folder")
    texts = {"the-verdict.txt": [verdict.read_text(encoding="utf-8")]}
    instructions = shared / "instruction-data.json"
    if instructions.is_file():
        records = json.loads(instructions.read_text(encoding="utf-8"))
        texts["instruction-data.json"] = [
            "\n\n".join(r[k] for k in ("instruction", "input", "output") if r.get(k)) for r in records
        ]
    spam = shared / "SMSSpamCollection"
    if spam.is_file():
        lines = spam.read_text(encoding="utf-8").splitlines()
        texts["SMSSpamCollection"] = [line.split("\t", 1)[-1] for line in lines if line]
    return texts


def long_text(texts: dict[str, list[str]], megabytes: float) -> str:
    """All texts joined (records by newlines, sources by blank lines), repeated and cut to `megabytes` MB."""
    base = "\n\n".join("\n".join(parts) for parts in texts.values())
    chars = int(megabytes * 1_000_000 * len(base) / len(base.encode("utf-8")))
    return (base * (chars // len(base) + 1))[:chars]


def first_difference(ours: list[list[int]], peer: list[list[int]]) -> str | None:
    """None when the id lists are equal, else where they first differ."""
    if len(ours) != len(peer):
        return f"{len(ours)} vs {len(peer)} documents"
    for doc, (a, b) in enumerate(zip(ours, peer)):
        if a != b:
            at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            where = f"document {doc} ({len(a)} vs {len(b)} tokens), token {at}"
            return f"{where}: ours {a[at : at + 5]} vs tiktoken {b[at : at + 5]}"
    return None


def bench_training(text: str, vocab_size: int, rounds: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Training times of both trainers (after one untimed run each that checks what they learn); the
    details and the headline row."""
    from hf_scratchgpt.tokenization import train_bpe_tokenizer

    pure = PurePythonBPE()
    pure_ids = pure.train(text, vocab_size)
    ours = train_bpe_tokenizer(text, vocab_size)
    ours_tokens = len(ours(text, add_special_tokens=False, verbose=False)["input_ids"])
    check = {
        "ours_vocab": len(ours),
        "pure_python_vocab": len(pure.vocab),
        "ours_tokens_of_text": ours_tokens,
        "pure_python_tokens_of_text": len(pure_ids),
        "pure_python_roundtrip": pure.decode(pure_ids) == text,
    }
    cases = {
        "ours: train_bpe_tokenizer (tokenizers)": lambda: train_bpe_tokenizer(text, vocab_size),
        "pure-Python BPE (book's algorithm)": lambda: PurePythonBPE().train(text, vocab_size),
    }
    times = common.interleaved(cases, rounds=rounds, warmup=0)
    ours_t, peer_t = times.values()
    detail = {
        "text_chars": len(text),
        "vocab_size": vocab_size,
        "check": check,
        "seconds": {name: {**common.spread(ts), "rounds": ts} for name, ts in times.items()},
    }
    row = common.headline(
        "tokenizer",
        f"BPE training, {len(text):,} chars to vocab {vocab_size:,}",
        1000 * common.spread(ours_t)["median"],
        "pure-Python BPE (book's algorithm, re-implemented)",
        1000 * common.spread(peer_t)["median"],
        common.ratio(ours_t, peer_t, higher_is_better=False),
        "ms",
    )
    return detail, row


def our_time_breakdown(tokenizer: Any, text: str) -> dict[str, float]:
    """One pass of `encode_texts`' steps on the long text with the `tokenizers` engine, each timed."""
    from hf_scratchgpt.data.tokenize import BATCH_PIECES, split_at_safe_spaces

    backend = tokenizer.backend_tokenizer
    t0 = time.perf_counter()
    pieces = split_at_safe_spaces(text)
    t1 = time.perf_counter()
    encodings = []
    for start in range(0, len(pieces), BATCH_PIECES):
        encodings += backend.encode_batch_fast(pieces[start : start + BATCH_PIECES], add_special_tokens=False)
    t2 = time.perf_counter()
    np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings]).tolist()
    t3 = time.perf_counter()
    return {
        "pieces": len(pieces),
        "split_at_safe_spaces_s": t1 - t0,
        "tokenizers_encode_batch_fast_s": t2 - t1,
        "ids_to_numpy_and_list_s": t3 - t2,
    }


def bench_encoding(
    cases: dict[str, list[str]], gpt2_dir: Path, rounds: int, threads: int | None, round_mb: float
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """MB/s of our GPT-2 tokenizer (`encode_texts`) and tiktoken on each set of documents, each round
    encoding about `round_mb` MB or more; the details and one headline row per set."""
    import tiktoken

    from hf_scratchgpt.book import use_local_gpt2_files
    from hf_scratchgpt.data.tokenize import encode_texts, encoding_engine
    from hf_scratchgpt.tokenization import load_gpt2_tokenizer

    tokenizer = load_gpt2_tokenizer(gpt2_dir)
    use_local_gpt2_files(gpt2_dir)
    enc = tiktoken.get_encoding("gpt2")
    batch_threads = threads or 8  # tiktoken's default for encode_ordinary_batch

    details: dict[str, Any] = {}
    rows = []
    for label, docs in cases.items():
        mb = sum(len(d.encode("utf-8")) for d in docs) / 1e6
        if len(docs) == 1:
            text = docs[0]
            peer_name = "tiktoken encode_ordinary"

            def peer(text: str = text) -> list[list[int]]:
                return [enc.encode_ordinary(text)]
        else:
            peer_name = "tiktoken encode_ordinary_batch"

            def peer(docs: list[str] = docs) -> list[list[int]]:
                return enc.encode_ordinary_batch(docs, num_threads=batch_threads)

        def ours(docs: list[str] = docs) -> list[list[int]]:
            return encode_texts(tokenizer, docs)

        def ours_tokenizers(docs: list[str] = docs) -> list[list[int]]:
            return encode_texts(tokenizer, docs, engine="tokenizers")

        peer_ids = peer()
        mismatch = first_difference(ours(), peer_ids) or first_difference(ours_tokenizers(), peer_ids)  # warm-up too
        if mismatch:
            print(f"WARNING: {label}: our ids differ from tiktoken's: {mismatch}")
        calls = max(1, round(round_mb / mb))  # a small set is encoded several times a round
        cases_timed = {"ours": ours, "ours, tokenizers engine": ours_tokenizers, "peer": peer}
        times = common.interleaved(cases_timed, rounds=rounds, warmup=0, calls=calls)
        rates = {name: [mb / t for t in ts] for name, ts in times.items()}
        details[label] = {
            "documents": len(docs),
            "megabytes": mb,
            "calls_per_round": calls,
            "ids_identical": mismatch is None,
            "first_mismatch": mismatch,
            "ours": "encode_texts(load_gpt2_tokenizer(...), docs)",
            "ours_engine": encoding_engine(tokenizer, docs),
            "peer": peer_name,
            "mb_per_s": {name: {**common.spread(r), "rounds": r} for name, r in rates.items()},
        }
        trained = " (`tokenizers` engine, as for trained vocabularies)"
        for name, (suffix, target) in {"ours": ("", 0.5), "ours, tokenizers engine": (trained, None)}.items():
            rows.append(
                common.headline(
                    "tokenizer",
                    f"GPT-2 encoding, {label}{suffix}",
                    common.spread(rates[name])["median"],
                    peer_name,
                    common.spread(rates["peer"])["median"],
                    common.ratio(rates[name], rates["peer"]),
                    "MB/s",
                    target=target,
                )
            )
    first = next(iter(cases.values()))[0]
    details["our_time_breakdown_on_long_text"] = our_time_breakdown(tokenizer, first)
    details["threads"] = {
        "RAYON_NUM_THREADS": os.environ.get("RAYON_NUM_THREADS"),
        "TOKENIZERS_PARALLELISM": os.environ.get("TOKENIZERS_PARALLELISM"),
        "cores": os.cpu_count(),
        "tokenizers": "Rayon pool: RAYON_NUM_THREADS, else one thread per core",
        "ours_tiktoken_engine": "encode_texts' threads: RAYON_NUM_THREADS, else one per core",
        "tiktoken_encode_ordinary": 1,
        "tiktoken_encode_ordinary_batch": batch_threads,
    }
    return details, rows


def print_table(rows: list[dict[str, Any]], training: dict[str, Any], encoding: dict[str, Any]) -> None:
    """The headline rows and the checks, as a Markdown table and notes."""
    print("| measure | ours | peer | peer's | ours better by [range] | target |\n|---|---|---|---|---|---|")
    for r in rows:
        target = "" if r["target"] is None else f">= {r['target']:g}x {'met' if r['met'] else 'NOT met'}"
        print(
            f"| {r['measure']} | {r['ours']:,.2f} {r['unit']} | {r['peer']} | {r['peer_value']:,.2f} {r['unit']} | "
            f"{r['ratio']:.2f}x [{r['ratio_min']:.2f}-{r['ratio_max']:.2f}] | {target} |"
        )
    c = training["check"]
    roundtrip = "ok" if c["pure_python_roundtrip"] else "FAILED"
    print(
        f"training check: vocab ours {c['ours_vocab']:,} / pure-Python {c['pure_python_vocab']:,}; the text in "
        f"{c['ours_tokens_of_text']:,} / {c['pure_python_tokens_of_text']:,} tokens (ours pre-tokenizes into words, "
        f"the book's algorithm merges across them); pure-Python round trip {roundtrip}"
    )
    for label, d in encoding.items():
        if "ids_identical" in d:
            same = "identical ids" if d["ids_identical"] else f"IDS DIFFER: {d['first_mismatch']}"
            print(f"encoding {label}: {d['documents']:,} documents, {d['megabytes']:.2f} MB, {same}")
    b = encoding["our_time_breakdown_on_long_text"]
    print(
        f"our tokenizers engine on the long text, one pass: {b['pieces']} pieces; "
        f"split {b['split_at_safe_spaces_s']:.3f} s, "
        f"tokenizers encode_batch_fast {b['tokenizers_encode_batch_fast_s']:.3f} s, "
        f"ids to numpy/list {b['ids_to_numpy_and_list_s']:.3f} s"
    )
    t = encoding["threads"]
    print(
        f"threads: {t['cores']} cores; RAYON_NUM_THREADS={t['RAYON_NUM_THREADS']}, "
        f"TOKENIZERS_PARALLELISM={t['TOKENIZERS_PARALLELISM']}; tiktoken batch {t['tiktoken_encode_ordinary_batch']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(parser)
    parser.add_argument("--mb", type=float, help="MB of the long text (default 5; quick 0.2)")
    parser.add_argument("--train-chars", type=int, help="chars of the-verdict to train on (default all; quick 5000)")
    parser.add_argument("--vocab", type=int, help="vocabulary size to train (default 1000; quick 300)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 5; quick 1)")
    parser.add_argument("--threads", type=int, help="RAYON_NUM_THREADS and tiktoken's batch threads (default: theirs)")
    args = parser.parse_args()
    mb = args.mb or (0.2 if args.quick else 5.0)
    train_chars = args.train_chars or (5_000 if args.quick else None)
    vocab = args.vocab or (300 if args.quick else 1_000)
    rounds = args.rounds or (1 if args.quick else 5)
    if args.threads:  # before the tokenizers library starts its Rayon pool (on its first parallel call)
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)

    start = time.perf_counter()
    texts = shared_texts(common.SHARED_DATA)
    verdict = texts["the-verdict.txt"][0]
    text = long_text(texts, mb)
    enc_cases = {f"one {mb:g} MB text": [text]}
    enc_cases[f"{DOC_CHARS:,}-char documents"] = [text[i : i + DOC_CHARS] for i in range(0, len(text), DOC_CHARS)]
    if "instruction-data.json" in texts:
        enc_cases["instruction records"] = texts["instruction-data.json"]

    training, train_row = bench_training(verdict[:train_chars], vocab, rounds)
    encoding, enc_rows = bench_encoding(enc_cases, common.SHARED_DATA / "gpt2", rounds, args.threads, min(mb, 1.0))
    rows = [train_row, *enc_rows]
    print(f"tokenizer benchmark: median of {rounds} interleaved round(s); MB = 10^6 bytes of UTF-8 text")
    print_table(rows, training, encoding)
    summary = {
        "quick": args.quick,
        "config": {"mb": mb, "train_chars": len(verdict[:train_chars]), "vocab": vocab, "rounds": rounds},
        "sources": {name: len(parts) for name, parts in texts.items()},
        "training": training,
        "encoding": encoding,
        "ids_identical": all(d.get("ids_identical", True) for d in encoding.values()),
        "seconds": time.perf_counter() - start,
    }
    path = common.save("tokenizer", args.out, summary, rows)
    print(f"{summary['seconds']:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
