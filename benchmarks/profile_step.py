"""Where a training step's time goes: `torch.profiler` over the step `scratchgpt pretrain` takes, ours vs a peer.

Builds the models of `bench_train_throughput` at one size, runs two warm-up steps, then profiles
`--steps` steps of each and prints the operators with the most self CPU time, and the share of the
step spent in matrix products (`aten::mm`, `addmm`, `bmm`, the attention kernel) — the part the
matmul peak bounds; the rest (element-wise kernels, the optimizer, autograd bookkeeping) is what
keeps model-FLOPs utilisation below it.

Usage: python -m benchmarks.profile_step [--size small] [--peer "gpt2 sdpa"] [--steps 3] [--bf16] [--rows 15]
"""

from __future__ import annotations

import argparse

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_train_throughput import OURS, SIZES, build, training_step

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::_scaled_dot_product_flash_attention_for_cpu",
           "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::linear", "aten::matmul")  # fmt: skip


def profile_case(name: str, size: dict, steps: int, bf16: bool, rows: int) -> dict[str, float]:
    """Profile `steps` training steps of model `name`; print its top operators; return time shares."""
    b, t = size["shapes"][0]
    model = build(name, size)
    batch = torch.randint(0, size["vocab"], (b, t), generator=torch.Generator().manual_seed(t))
    step = training_step(name, model, batch, bf16)
    step()
    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMULS or "mkldnn" in e.key)
    print(f"\n== {name}{' bf16' if bf16 else ''}, {b}x{t}: {total / steps / 1e6:.3f} s of CPU time per step")
    print(events.table(sort_by="self_cpu_time_total", row_limit=rows))
    return {"step_cpu_s": total / steps / 1e6, "matmul_share": matmul / total}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="small", choices=list(SIZES))
    parser.add_argument("--peer", default="gpt2 sdpa", help="a case name of bench_train_throughput")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--rows", type=int, default=15)
    args = parser.parse_args(argv)
    shares = {
        name: profile_case(name, SIZES[args.size], args.steps, args.bf16, args.rows) for name in (OURS, args.peer)
    }
    for name, share in shares.items():
        print(f"{name}: {share['step_cpu_s']:.3f} s per step, {share['matmul_share']:.0%} of it in matrix products")


if __name__ == "__main__":
    main()
