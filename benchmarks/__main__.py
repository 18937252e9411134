"""Run every benchmark, side by side with its peers, and write one JSON and one Markdown table.

Each benchmark runs in its own process (`python -m benchmarks.<name>`, so memory peaks and thread
pools are its own) and writes `OUT/<name>.json`; this gathers their headline rows, with the date, the
machine and the library versions, into `OUT/benchmarks.json` and `OUT/BENCHMARKS.md` (a benchmark
left out with `--only` keeps its last result in OUT, with its date). `--readme` also puts the table
into README.md between its benchmark markers.

Usage: python -m benchmarks [--quick] [--all | --only NAME ...] [--device cpu|cuda] [--out DIR] [--readme]
       (`--quick`: tiny sizes and one round, a smoke test of every benchmark; results go to
       benchmarks/results/quick/ unless --out says otherwise. `--device cuda`: the benchmarks that
       run on a GPU (training throughput, generation) there; results in benchmarks/results/gpu/)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import HERE, RESULTS, machine, write_text

ROOT = HERE.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- benchmarks:begin -->", "<!-- benchmarks:end -->"

# name -> (module, arguments of the full run); every module also takes --quick and --out
BENCHMARKS: dict[str, tuple[str, list[str]]] = {
    "pretrain_quality": ("benchmarks.bench_pretrain_quality", []),  # 8 minutes: run with --all or --only
    "train_throughput": ("benchmarks.bench_train_throughput", []),
    "generation": ("benchmarks.bench_generation", []),
    "tokenizer": ("benchmarks.bench_tokenizer", []),
    "data_pipeline": ("benchmarks.bench_data_pipeline", ["--mb", "10"]),
    "lora_step": ("benchmarks.bench_lora_step", []),
    "convert_memory": ("benchmarks.bench_convert_memory", ["--size", "gpt2-medium"]),
}
EXTRA = ("pretrain_quality",)  # left out of a plain full run (two 3.5-minute pretraining runs)
ON_GPU = ("train_throughput", "generation")  # the benchmarks that take --device


def run_one(name: str, quick: bool, out: Path, device: str = "cpu") -> dict[str, Any]:
    """Run one benchmark in a fresh process; its JSON, or a record of how it failed."""
    module, args = BENCHMARKS[name]
    command = [sys.executable, "-m", module, *args, "--out", str(out), *(["--quick"] if quick else [])]
    if device != "cpu":
        command += ["--device", device]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": pythonpath})
    seconds = time.perf_counter() - start
    path = out / f"{name}.json"
    if result.returncode != 0 or not path.is_file():
        return {"benchmark": name, "error": f"exit status {result.returncode}", "seconds": seconds, "headlines": []}
    data = json.loads(path.read_text())
    data["seconds"] = seconds
    return data


def _number(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0%}"
    return f"{value:,.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def markdown(results: list[dict[str, Any]], info: dict[str, Any], quick: bool) -> str:
    """The summary table: one row per headline (ours, the peer, the ratio with its range, the target)."""
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    dates = sorted({d["machine"]["date"][:10] for d in results if "machine" in d} | {info["date"][:10]})
    gpu = next((d["machine"]["gpu"] for d in results if d.get("device", "cpu") != "cpu"), None)
    where = (
        f"one {gpu} (host: {info['cpu']}, {info['cores']} cores)"
        if gpu
        else (f"{info['cpu']} ({info['cores']} cores, {info['torch_threads']} torch threads)")
    )
    lines = [
        f"Measured {', '.join(dates)} on {where}, "
        f"Python {info['python']}, {versions}{' — quick mode: smoke-test sizes, not figures' if quick else ''}. "
        "Ratio: how many times better ours is (median of interleaved rounds, range in brackets).",
        "",
        "| benchmark | measure | ours | peer | peer's | ratio [range] | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for data in results:
        if data.get("error"):
            lines.append(f"| {data['benchmark']} | did not run: {data['error']} | | | | | |")
            continue
        for row in data["headlines"]:
            target = "" if row.get("target") is None else f"≥ {row['target']:.3g}x {'met' if row['met'] else 'not met'}"
            lines.append(
                f"| {row['benchmark']} | {row['measure']} | {_number(row['ours'], row['unit'])} | {row['peer']} | "
                f"{_number(row['peer_value'], row['unit'])} | {row['ratio']:.2f}x "
                f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] | {target} |"
            )
    notes = [f"- {d['benchmark']}, {case}: {why}" for d in results for case, why in (d.get("failed") or {}).items()]
    if notes:
        lines += ["", "Cases that failed (recorded, not hidden):", *notes]
    return "\n".join(lines) + "\n"


def embed_in_readme(table: str, readme: Path = README) -> None:
    """Replace the text between the README's benchmark markers with `table`.

    Raises:
        ValueError: The README lacks the markers.
    """
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme} has no {BEGIN} ... {END} markers to put the table between")
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    write_text(readme, f"{head}{BEGIN}\n{table}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round: a smoke test")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), help="run these benchmarks only")
    parser.add_argument("--all", action="store_true", help=f"also {', '.join(EXTRA)} (a quick run always has it)")
    parser.add_argument("--device", default="cpu", help=f"cpu (default) or cuda: runs {', '.join(ON_GPU)} there")
    parser.add_argument("--out", type=Path, help="results folder (default: results/, results/quick/, results/gpu/)")
    parser.add_argument("--readme", action="store_true", help="put the table into README.md (CPU runs)")
    args = parser.parse_args(argv)
    gpu = args.device != "cpu"
    if gpu and (args.readme or set(args.only or ()) - set(ON_GPU)):
        parser.error(f"--device {args.device} runs only {', '.join(ON_GPU)}, and its table is not the README's")
    out = args.out or RESULTS / ("gpu" if gpu else "") / ("quick" if args.quick else "")
    out.mkdir(parents=True, exist_ok=True)
    names = args.only or [n for n in (ON_GPU if gpu else BENCHMARKS) if args.all or args.quick or n not in EXTRA]
    start = time.perf_counter()
    ran = {name: run_one(name, args.quick, out, args.device) for name in names}
    # the table holds every benchmark: those not run this time from their last result in OUT (its own date)
    earlier = {
        n: json.loads((out / f"{n}.json").read_text())
        for n in BENCHMARKS
        if n not in ran and (out / f"{n}.json").is_file()
    }
    results = [ran.get(n) or earlier[n] for n in BENCHMARKS if n in ran or n in earlier]
    info = machine()
    table = markdown(results, info, args.quick)
    summary = {"machine": info, "quick": args.quick, "ran": names, "seconds": time.perf_counter() - start,
               "results": results}  # fmt: skip
    write_text(out / "benchmarks.json", json.dumps(summary, indent=2))
    write_text(out / "BENCHMARKS.md", table)
    print(table)
    print(f"{len(names)} benchmarks in {summary['seconds']:.0f} s; results in {out}")
    if args.readme:
        embed_in_readme(table)
    return 1 if any(r.get("error") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
