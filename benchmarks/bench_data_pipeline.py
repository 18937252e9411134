"""Stage-2 benchmark: windows from a >= 20 MB corpus, this pipeline vs the book's plain-Python loop.

Side by side in one run, each measurement in its own fresh process (so peak memory is its own):

* `book`: the book's `GPTDatasetV1` as written there — one `tokenizer.encode(txt)` call on the
  whole text, then a Python loop making two tensors per window — with the same GPT-2 tokenizer.
* `pipeline`: `prepare_lm_datasets` in memory (uncached: a fresh HF_HOME), train + validation.
* `pipeline-cached`: the same call again on the same cache.
* `streaming`: `prepare_lm_datasets(streaming=True)`, every window of both splits iterated,
  on the corpus and on a corpus twice as large (memory must stay flat).

Usage: python -m benchmarks.bench_data_pipeline [--shared-data ../shared/data] [--mb 20] [--quick] [--out DIR]
Prints a table and writes DIR/data_pipeline.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.common import SHARED_DATA, add_common_args, headline, save, spread

HERE = Path(__file__).resolve().parent

WORKER = r"""
import json, os, resource, sys, time
mode, corpus, gpt2_dir, max_length, stride = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
from hf_scratchgpt.tokenization import load_gpt2_tokenizer
tok = load_gpt2_tokenizer(gpt2_dir)
import torch
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "book":
    txt = open(corpus, encoding="utf-8").read()
    token_ids = tok.encode(txt)
    input_ids, target_ids = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        input_ids.append(torch.tensor(token_ids[i:i + max_length]))
        target_ids.append(torch.tensor(token_ids[i + 1:i + max_length + 1]))
    tokens, windows = len(token_ids), len(input_ids)
else:
    from hf_scratchgpt.data import prepare_lm_datasets
    data = prepare_lm_datasets(corpus, tok, max_length=max_length, stride=stride, val_fraction=0.1,
                               streaming=mode == "streaming")
    if mode == "streaming":
        windows = tokens = 0
        for split in (data.train, data.validation):
            for row in split:
                windows += 1
        tokens = None
    else:
        windows = len(data.train) + len(data.validation)
        tokens = data.provenance["train_tokens"] + data.provenance["validation_tokens"]
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "seconds": seconds, "tokens": tokens, "windows": windows,
                  "peak_rss_mb": peak / 1024, "rss_before_mb": start_rss / 1024}))
"""


def build_corpus(shared: Path, megabytes: float, path: Path) -> int:
    """A single UTF-8 text of at least `megabytes` MB: the-verdict and CPython's pydoc topics, repeated."""
    from pydoc_data.topics import topics

    base = (
        (shared / "the-verdict.txt").read_text(encoding="utf-8")
        + "\n\n"
        + "\n\n".join(topics[k] for k in sorted(topics))
    )
    target = int(megabytes * 1_000_000)
    with path.open("w", encoding="utf-8") as f:
        written, i = 0, 0
        while written < target:
            chunk = f"\n\n== part {i} ==\n\n" + base
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
            i += 1
    return path.stat().st_size


def run(mode: str, corpus: Path, gpt2: Path, max_length: int, stride: int, hf_home: Path) -> dict:
    env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    out = subprocess.run(
        [sys.executable, "-c", WORKER, mode, str(corpus), str(gpt2), str(max_length), str(stride)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    parser.add_argument("--mb", type=float, default=20.0)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=128)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.mb = 0.5

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus, big = tmp / "corpus.txt", tmp / "corpus-2x.txt"
        size = build_corpus(args.shared_data, args.mb, corpus)
        size2 = build_corpus(args.shared_data, 2 * args.mb, big)
        gpt2 = args.shared_data / "gpt2"
        common = (gpt2, args.max_length, args.stride)
        results = {
            "book": run("book", corpus, *common, tmp / "home-book"),
            "pipeline": run("pipeline", corpus, *common, tmp / "home-pipeline"),
            "pipeline-cached": run("pipeline", corpus, *common, tmp / "home-pipeline"),
            "streaming": run("streaming", corpus, *common, tmp / "home-stream"),
            "streaming-2x": run("streaming", big, *common, tmp / "home-stream2"),
            "pipeline-2x": run("pipeline", big, *common, tmp / "home-pipeline2"),
        }
    tokens = results["pipeline"]["tokens"]
    results["streaming"]["tokens"] = tokens
    results["streaming-2x"]["tokens"] = results["pipeline-2x"]["tokens"]
    book_rate = results["book"]["tokens"] / results["book"]["seconds"]
    summary = {
        "corpus_bytes": size,
        "corpus_2x_bytes": size2,
        "max_length": args.max_length,
        "stride": args.stride,
        "results": results,
        "speedup_vs_book": {k: (v["tokens"] / v["seconds"]) / book_rate for k, v in results.items()},
        "peak_rss_streaming_vs_in_memory": results["streaming"]["peak_rss_mb"] / results["pipeline"]["peak_rss_mb"],
        "peak_rss_growth_2x_corpus": {
            "streaming": results["streaming-2x"]["peak_rss_mb"] / results["streaming"]["peak_rss_mb"],
            "in_memory": results["pipeline-2x"]["peak_rss_mb"] / results["pipeline"]["peak_rss_mb"],
        },
    }
    print(f"corpus {size / 1e6:.1f} MB, {tokens:,} GPT-2 tokens, max_length {args.max_length}, stride {args.stride}")
    print(f"{'run':<16}{'seconds':>9}{'tokens/s':>12}{'x book':>8}{'windows':>10}{'peak RSS MB':>13}")
    for name, r in results.items():
        rate = r["tokens"] / r["seconds"]
        print(
            f"{name:<16}{r['seconds']:>9.2f}{rate:>12,.0f}{rate / book_rate:>8.2f}{r['windows']:>10,}"
            f"{r['peak_rss_mb']:>13.0f}"
        )
    print(
        f"peak RSS streaming / in-memory: {summary['peak_rss_streaming_vs_in_memory']:.2f}; "
        f"growth with a 2x corpus: streaming {summary['peak_rss_growth_2x_corpus']['streaming']:.2f}x, "
        f"in-memory {summary['peak_rss_growth_2x_corpus']['in_memory']:.2f}x"
    )
    headlines = []
    for name in ("pipeline", "pipeline-cached"):
        speedup = summary["speedup_vs_book"][name]
        rate = results[name]["tokens"] / results[name]["seconds"]
        headlines.append(headline(
            "data", f"{size / 1e6:.0f} MB to GPT-2 windows, tokens/s ({name.replace('pipeline', 'ours')})",
            rate, "book GPTDatasetV1", book_rate, spread([speedup]), "tok/s",
        ))  # fmt: skip
    memory = 1 / summary["peak_rss_streaming_vs_in_memory"]
    headlines.append(headline(
        "data", f"{size / 1e6:.0f} MB, peak memory (MB), streaming", results["streaming"]["peak_rss_mb"], "in memory",
        results["pipeline"]["peak_rss_mb"], spread([memory]), "MB",
    ))  # fmt: skip
    print(save("data_pipeline", args.out, summary, headlines))


if __name__ == "__main__":
    main()
