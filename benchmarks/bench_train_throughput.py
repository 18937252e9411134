"""Training-step throughput and peak memory of ScratchGPT vs transformers' GPT-2 and the book's models.

The same configuration for every model (GPT-2 layout with query/key/value bias, untied output head as
`scratchgpt pretrain` and the book use, dropout 0.1) and the same full training step as `scratchgpt
pretrain` runs it: forward, the loss the user trains with, backward, gradient clipping at 1.0 and a
fused AdamW step (decay on matrices only). The peers:

- transformers' `GPT2LMHeadModel`, SDPA and eager attention (its loss: `labels=`);
- the book's package `llms_from_scratch` (`ch04.GPTModel`, the readable one, and `GPTModelFast`), with
  the book's loss (`cross_entropy` over the flattened logits);
- ScratchGPT with the plain loss, with PyTorch's default (non-fused) AdamW, under `torch.compile`.

ScratchGPT trains with its fused output-head loss (what `pretrain` uses). Cases are timed interleaved
after warm-up; tokens/s is batch x length / median step time. Model-FLOPs utilisation (MFU) counts
6 x (parameters without the embeddings) + 12 x layers x width x length per token against the matmul
peak (fp32 and bf16) measured in the same run. Peak memory: each model in its own process, two
training steps of the longest shape, that process's VmHWM (with and without gradient checkpointing for ours).

Sizes: `small` (vocabulary 8,192, context 256, 6 layers x 384, batch 8 x 256: every case, fp32, and bf16
autocast for ours and transformers' SDPA model) and `gpt2-small` (124M, batches 2 x 256 and 1 x 1024:
ours, transformers' SDPA model and the book's `GPTModel` in fp32, ours in bf16).

`--device cuda` runs the same cases on a GPU, with larger batches beside the CPU's (small: 64 x 256;
GPT-2 small: 8 x 1024), `torch.compile` and the SDPA model in bf16 too (compiled at each size's
largest batch only: every shape compiles anew), ten steps per timed round, and peak memory as
`torch.cuda.max_memory_allocated` in the same process. The targets are the CPU's; GPU rows have none.

Usage: python -m benchmarks.bench_train_throughput [--sizes small gpt2-small] [--rounds 5] [--device cpu|cuda]
       [--quick] [--out DIR]
Writes DIR/train_throughput.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel

from benchmarks.common import (
    BOOK_INSTALL,
    add_common_args,
    headline,
    interleaved,
    ratio,
    save,
    spread,
    synchronizer,
    timed,
)
from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.training.loop import param_groups

SIZES: dict[str, dict[str, Any]] = {
    "small": {"vocab": 8192, "context": 256, "layers": 6, "emb": 384, "heads": 6, "shapes": [(8, 256)]},
    "gpt2-small": {
        "vocab": 50257, "context": 1024, "layers": 12, "emb": 768, "heads": 12, "shapes": [(2, 256), (1, 1024)],
    },
}  # fmt: skip
QUICK = {"vocab": 512, "context": 64, "layers": 2, "emb": 64, "heads": 2}
QUICK_SHAPES = {"small": [(2, 64)], "gpt2-small": [(1, 64)]}
GPU_SHAPES = {"small": [(8, 256), (64, 256)], "gpt2-small": [(2, 256), (1, 1024), (8, 1024)]}
OURS, SDPA, EAGER, BOOK, BOOK_FAST = "scratchgpt", "gpt2 sdpa", "gpt2 eager", "book GPTModel", "book GPTModelFast"
PLAIN, FOREACH, COMPILED = "scratchgpt plain loss", "scratchgpt default AdamW", "scratchgpt torch.compile"
MEMORY_CASES = (OURS, f"{OURS} + checkpointing", SDPA, BOOK, BOOK_FAST)


def matmul_peak(dtype: torch.dtype, n: int = 2048, repeats: int = 10, device: str = "cpu") -> float:
    """FLOP/s of an n x n x n matrix product (best of `repeats`)."""
    a, b = (torch.randn(n, n, dtype=dtype, device=device) for _ in range(2))
    for _ in range(2):
        a @ b
    return 2 * n**3 / min(timed(lambda: a @ b, synchronizer(device)) for _ in range(repeats))


def build(name: str, size: dict[str, Any], device: str = "cpu") -> torch.nn.Module:
    """A model of `size` by its case name, with the same configuration for all, on `device`."""
    model = _build(name, size).to(device)
    return torch.compile(model) if name == COMPILED else model


def _build(name: str, size: dict[str, Any]) -> torch.nn.Module:
    """A model of `size` by its case name, with the same configuration for all."""
    torch.manual_seed(0)
    if name.startswith("scratchgpt"):
        config = ScratchGPTConfig(
            vocab_size=size["vocab"], context_length=size["context"], emb_dim=size["emb"], n_heads=size["heads"],
            n_layers=size["layers"], drop_rate=0.1, qkv_bias=True, tie_word_embeddings=False,
            fused_linear_cross_entropy=name != PLAIN,
        )  # fmt: skip
        return ScratchGPTForCausalLM._from_config(config, attn_implementation="sdpa")
    if name.startswith("gpt2"):
        config = GPT2Config(
            vocab_size=size["vocab"], n_positions=size["context"], n_embd=size["emb"], n_head=size["heads"],
            n_layer=size["layers"], tie_word_embeddings=False,
        )  # fmt: skip
        return GPT2LMHeadModel._from_config(config, attn_implementation="eager" if name == EAGER else "sdpa")
    from llms_from_scratch.ch04 import GPTModel, GPTModelFast

    book = {"vocab_size": size["vocab"], "context_length": size["context"], "emb_dim": size["emb"],
            "n_heads": size["heads"], "n_layers": size["layers"], "drop_rate": 0.1, "qkv_bias": True}  # fmt: skip
    return (GPTModelFast if name == BOOK_FAST else GPTModel)(book)


def training_step(name: str, model: torch.nn.Module, batch: torch.Tensor, bf16: bool) -> Callable[[], None]:
    """One step as `scratchgpt pretrain` takes it: forward, loss, backward, clip at 1.0, AdamW."""
    optimizer = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-4, fused=name != FOREACH)
    model.train()

    def loss() -> torch.Tensor:
        if name.startswith("book"):
            logits = model(batch)[:, :-1]
            return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
        return model(input_ids=batch, labels=batch, use_cache=False).loss

    def step() -> None:
        with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=bf16):
            value = loss()
        value.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def flops_per_token(model: torch.nn.Module, size: dict[str, Any], length: int) -> float:
    """6 x (parameters less the token and position embeddings) + 12 x layers x width x length."""
    n = sum(p.numel() for p in model.parameters()) - (size["vocab"] + size["context"]) * size["emb"]
    return 6 * n + 12 * size["layers"] * size["emb"] * length


@functools.cache
def book_missing() -> str | None:
    """Why the book's models cannot run here (their package is not installed), or None (asked once)."""
    try:
        importlib.import_module("llms_from_scratch.ch04")
    except ImportError as err:
        return f"{err}: {BOOK_INSTALL}"
    return None


def cases_of(size_name: str, quick: bool, device: str = "cpu") -> list[tuple[str, bool]]:
    """(model, bf16) cases of a size: everything at the small size; the targets' peers at GPT-2 small.
    On a GPU also `torch.compile` at both sizes, and it and the SDPA model in bf16. Without the book's
    package, no book cases."""
    gpu = device != "cpu"
    if size_name != "small":
        fp32 = [OURS, SDPA, BOOK, *([COMPILED] if gpu and not quick else [])]
        cases = [(name, False) for name in fp32] + [(OURS, True), *([(SDPA, True), (COMPILED, True)] if gpu else [])]
    else:
        fp32 = [OURS, SDPA, EAGER, BOOK, BOOK_FAST, PLAIN, FOREACH, *([] if quick else [COMPILED])]
        cases = [(name, False) for name in fp32] + [(OURS, True), (SDPA, True), *([(COMPILED, True)] if gpu else [])]
    return [c for c in cases if not (c[0].startswith("book") and book_missing())]


def throughput(
    size_name: str, size: dict[str, Any], shapes: list[tuple[int, int]], rounds: int, quick: bool, device: str = "cpu"
):
    """Median tokens/s per case and shape, interleaved; and the per-round times. `torch.compile` runs at
    the largest shape only (each new shape compiles anew)."""
    cases = cases_of(size_name, quick, device)
    models = {name: build(name, size, device) for name in dict.fromkeys(name for name, _ in cases)}
    gpu = device != "cpu"
    results: dict[str, dict[str, Any]] = {}
    for b, t in shapes:
        batch = torch.randint(0, size["vocab"], (b, t), generator=torch.Generator().manual_seed(t)).to(device)
        steps = {
            f"{n}{' bf16' if bf16 else ''}": training_step(n, models[n], batch, bf16)
            for n, bf16 in cases
            if n != COMPILED or (b, t) == shapes[-1]
        }
        warmup = 3 if gpu else 2 if size_name == "small" and not quick else 1  # torch.compile compiles first
        times = interleaved(steps, rounds=rounds, warmup=warmup, calls=10 if gpu else 1, sync=synchronizer(device))
        for case, ts in times.items():
            model = models[case.removesuffix(" bf16")]
            rates = [b * t / s for s in ts]
            results[f"{case}, {b}x{t}"] = {
                "tokens_per_s": spread(rates), "rates": rates, "flops_per_token": flops_per_token(model, size, t),
            }  # fmt: skip
    return results


def shapes_of(size_name: str, quick: bool, device: str = "cpu") -> list[tuple[int, int]]:
    """The (batch, length) shapes a size is timed at, the largest last."""
    if quick:
        return QUICK_SHAPES[size_name]
    return GPU_SHAPES[size_name] if device != "cpu" else SIZES[size_name]["shapes"]


def peak_memory(case: str, size_name: str, quick: bool, device: str = "cpu") -> float:
    """Peak MB of two training steps of `case` at the size's longest shape: on the CPU the resident memory
    of a fresh process, on a GPU `torch.cuda.max_memory_allocated` (in this process, reset first)."""
    if device != "cpu":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        two_steps(case, size_name, quick, device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    code = (
        "import sys; from benchmarks.bench_train_throughput import _memory_child; "
        f"_memory_child({case!r}, {size_name!r}, {quick!r})"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def two_steps(case: str, size_name: str, quick: bool, device: str = "cpu") -> None:
    """Two training steps of `case` (optionally "... + checkpointing") at the size's longest shape."""
    size = {**SIZES[size_name], **(QUICK if quick else {})}
    b, t = max(shapes_of(size_name, quick, device), key=lambda s: s[0] * s[1])
    name = case.removesuffix(" + checkpointing")
    model = build(name, size, device)
    if case.endswith("checkpointing"):
        model.gradient_checkpointing_enable()
    step = training_step(name, model, torch.randint(0, size["vocab"], (b, t), device=device), bf16=False)
    step()
    step()


def _memory_child(case: str, size_name: str, quick: bool) -> None:
    two_steps(case, size_name, quick)
    print(peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: `VmHWM`, the high-water mark of its own address space.

    Not `ru_maxrss`: Linux carries a forked child's pre-exec high-water mark (a copy of its parent's
    memory) into it, so every child of a large parent would report the parent's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: an upper bound


def headlines_of(
    size_name: str, shapes: list[tuple[int, int]], results: dict, memory: dict, gpu: bool = False
) -> list[dict[str, Any]]:
    """The summary rows of one size: ours vs each peer and variant, bf16, MFU, memory (the targets: CPU only)."""
    rows = []
    targets = {} if gpu else {SDPA: 1.25, BOOK: 1.4}
    for b, t in shapes:
        for precision in ("fp32", "bf16"):
            suffix = " bf16" if precision == "bf16" else ""
            ours = results[f"{OURS}{suffix}, {b}x{t}"]
            tokens = ours["tokens_per_s"]["median"]
            for peer in (SDPA, EAGER, BOOK, BOOK_FAST, PLAIN, FOREACH, COMPILED):
                theirs = results.get(f"{peer}{suffix}, {b}x{t}")
                if theirs is None or (precision == "bf16" and not gpu):  # CPU: bf16 is compared with our fp32
                    continue
                variant = f" (vs {peer.removeprefix('scratchgpt ')})" if peer.startswith("scratchgpt") else ""
                rows.append(headline(
                    "training", f"train step {size_name} {b}x{t} {precision}, tokens/s{variant}", tokens, peer,
                    theirs["tokens_per_s"]["median"], ratio(ours["rates"], theirs["rates"]), "tok/s",
                    targets.get(peer) if precision == "fp32" else None,
                ))  # fmt: skip
            if gpu or (size_name == "small" and precision == "fp32"):
                rows.append(headline(
                    "training", f"train step {size_name} {b}x{t} {precision}, model-FLOPs utilisation", ours["mfu"],
                    f"measured {precision} matmul peak", 1.0, spread([ours["mfu"]]), "%", None if gpu else 0.8,
                ))  # fmt: skip
        fp32, bf16 = results[f"{OURS}, {b}x{t}"], results[f"{OURS} bf16, {b}x{t}"]
        rows.append(headline(
            "training", f"train step {size_name} {b}x{t}, tokens/s: bf16 autocast vs fp32",
            bf16["tokens_per_s"]["median"], "scratchgpt fp32", fp32["tokens_per_s"]["median"],
            ratio(bf16["rates"], fp32["rates"]), "tok/s", None if gpu else 1.8,
        ))  # fmt: skip
    checkpointed = memory[f"{OURS} + checkpointing"]
    rows.append(headline(
        "training", f"peak memory {size_name}, gradient checkpointing (MB)", checkpointed, "scratchgpt without",
        memory[OURS], spread([memory[OURS] / checkpointed]), "MB",
    ))  # fmt: skip
    for peer in (p for p in (SDPA, BOOK) if p in memory):
        rows.append(headline(
            "training", f"peak memory {size_name} (MB)", memory[OURS], peer, memory[peer],
            spread([memory[peer] / memory[OURS]]), "MB",
        ))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds at the small size (GPT-2 small: 2)")
    add_common_args(parser, device=True)
    args = parser.parse_args(argv)
    gpu = args.device != "cpu"

    n = 512 if args.quick else 8192 if gpu else 2048
    peaks = {dtype: matmul_peak(getattr(torch, name), n, device=args.device)
             for dtype, name in (("fp32", "float32"), ("bf16", "bfloat16"))}  # fmt: skip
    summary: dict[str, Any] = {
        "device": args.device, "matmul_peak_flops": peaks, "sizes": {}, "threads": torch.get_num_threads(),
        "failed": {name: why for name in (BOOK, BOOK_FAST) if (why := book_missing())},  # recorded, not hidden
    }  # fmt: skip
    headlines = []
    for size_name in args.sizes:
        size = {**SIZES[size_name], **(QUICK if args.quick else {})}
        shapes = shapes_of(size_name, args.quick, args.device)
        rounds = 1 if args.quick else args.rounds if size_name == "small" or gpu else 2
        results = throughput(size_name, size, shapes, rounds, args.quick, args.device)
        for key, r in results.items():
            r["mfu"] = r["tokens_per_s"]["median"] * r["flops_per_token"] / peaks["bf16" if " bf16" in key else "fp32"]
        memory_cases = MEMORY_CASES[:2] if args.quick else MEMORY_CASES[: 5 if size_name == "small" else 3]
        memory_cases = tuple(c for c in memory_cases if not (c.startswith("book") and book_missing()))
        memory = {case: peak_memory(case, size_name, args.quick, args.device) for case in memory_cases}
        summary["sizes"][size_name] = {
            "size": size, "shapes": shapes, "rounds": rounds, "results": results, "peak_memory_mb": memory,
        }  # fmt: skip
        headlines += headlines_of(size_name, shapes, results, memory, gpu)
        gflops = {k: round(v / 1e9) for k, v in peaks.items()}
        print(f"\n{size_name}: {size}; matmul peak GFLOP/s {gflops}")
        print(f"{'case':<44}{'tokens/s':>10}{'range':>18}{'MFU':>8}")
        for key, r in results.items():
            s = r["tokens_per_s"]
            span = f"{s['min']:,.0f}-{s['max']:,.0f}"
            print(f"{key:<44}{s['median']:>10,.0f}{span:>18}{r['mfu']:>8.1%}")
        print("peak MB (two steps of the longest shape):", ", ".join(f"{k} {v:,.0f}" for k, v in memory.items()))
    path = save("train_throughput", args.out, summary, headlines)
    for h in headlines:
        print(f"{h['measure']}: vs {h['peer']} {h['ratio']:.2f}x [{h['ratio_min']:.2f}-{h['ratio_max']:.2f}]")
    print(path)


if __name__ == "__main__":
    main()
