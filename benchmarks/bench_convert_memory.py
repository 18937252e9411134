"""Peak memory of `scratchgpt convert-gpt2` vs a plain load-then-convert, on a synthetic GPT-2 checkpoint.

A random GPT-2 checkpoint of the chosen size is written in the published layout (config.json +
model.safetensors, float32). Each conversion then runs in a fresh process and its peak resident
memory (ru_maxrss) is read by the parent:

- `hf_scratchgpt`: `convert_gpt2(SRC, OUT)` (safetensors read tensor by tensor, model on the meta device);
- `naive`: `GPT2LMHeadModel.from_pretrained(SRC)`, a fully built `ScratchGPTForCausalLM`, the mapped state
  dict loaded into it, `save_pretrained(OUT)` — what one writes without care for memory.

Usage: python -m benchmarks.bench_convert_memory [--size gpt2-xl] [--work DIR] [--shared-data ../shared/data]
       [--quick] [--out DIR]
Results: DIR/convert_memory.json (default benchmarks/results/)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import SHARED_DATA, add_common_args, headline, save, spread

HERE = Path(__file__).resolve().parent
SIZES = {  # name: (n_embd, n_layer, n_head)
    "tiny": (64, 2, 2),  # --quick
    "gpt2-small": (768, 12, 12),
    "gpt2-medium": (1024, 24, 16),
    "gpt2-large": (1280, 36, 20),
    "gpt2-xl": (1600, 48, 25),
}

MAKE = """
import sys, torch
from transformers import GPT2Config, GPT2LMHeadModel
e, l, h = map(int, sys.argv[2:5])
torch.manual_seed(0)
with torch.device("meta"):
    model = GPT2LMHeadModel(GPT2Config(n_embd=e, n_layer=l, n_head=h))
model.to_empty(device="cpu")
with torch.no_grad():
    for p in model.parameters():
        p.normal_(0, 0.02)
model.tie_weights()
model.save_pretrained(sys.argv[1])
"""

OURS = """
import sys
from hf_scratchgpt.commands.convert import convert_gpt2
convert_gpt2(sys.argv[1], sys.argv[2])
"""

NAIVE = """
import sys, torch
from transformers import GPT2LMHeadModel
from hf_scratchgpt import ScratchGPTForCausalLM
from hf_scratchgpt.convert import Tensors, config_from_gpt2, iter_gpt2_to_scratchgpt
gpt2 = GPT2LMHeadModel.from_pretrained(sys.argv[1])
config = config_from_gpt2(gpt2.config)
model = ScratchGPTForCausalLM(config)
model.load_state_dict(dict(iter_gpt2_to_scratchgpt(Tensors(gpt2, strip="transformer."), config)), strict=False)
model.tie_weights()
model.save_pretrained(sys.argv[2])
"""


def run_child(code: str, *args: str) -> tuple[float, float]:
    """Run `code` in a fresh interpreter; returns (seconds, peak RSS in MB of that child)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code, *args])
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"child failed with status {status}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="gpt2-xl", choices=sorted(SIZES))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA)
    add_common_args(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "tiny"
    os.environ.setdefault("SCRATCHGPT_GPT2_TOKENIZER", str(args.shared_data / "gpt2"))
    work = Path(tempfile.mkdtemp(prefix="convert-bench-", dir=args.work))
    try:
        src = work / "gpt2"
        e, layers, heads = SIZES[args.size]
        make_s, _ = run_child(MAKE, str(src), str(e), str(layers), str(heads))
        size_mb = (src / "model.safetensors").stat().st_size / 2**20
        print(f"synthetic {args.size}: {size_mb:,.0f} MB of float32 weights (written in {make_s:.0f} s)")
        rows = {}
        for name, code in (("hf_scratchgpt", OURS), ("naive", NAIVE)):
            out = work / f"out-{name}"
            seconds, peak = run_child(code, str(src), str(out))
            rows[name] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak), "peak_over_weights": peak / size_mb}
            print(f"{name:>14}: peak RSS {peak:,.0f} MB = {peak / size_mb:.2f} x the weights, {seconds:.0f} s")
            shutil.rmtree(out)
        times = rows["naive"]["peak_rss_mb"] / rows["hf_scratchgpt"]["peak_rss_mb"]
        print(f"naive / hf_scratchgpt peak memory: {times:.2f}x")
        result = {"size": args.size, "weights_mb": round(size_mb), "runs": rows, "naive_over_ours": round(times, 2)}
        row = headline(
            "conversion", f"convert-gpt2 {args.size} ({size_mb:,.0f} MB of weights): peak memory (MB)",
            rows["hf_scratchgpt"]["peak_rss_mb"], "load, convert, save", rows["naive"]["peak_rss_mb"],
            spread([times]), "MB",
        )  # fmt: skip
        print(save("convert_memory", args.out, result, [row]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
