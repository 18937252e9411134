"""One LoRA fine-tuning step vs one full fine-tuning step, side by side in one run.

For each model shape, the same ScratchGPT causal LM is trained (AdamW, a fixed random batch) in full
and with the scratch LoRA on every linear layer (rank 16, alpha 16, the book's appendix-E setting).
Steps of the two alternate; the median of the timed steps is reported with the trainable parameter
count and the bytes of AdamW state (exp_avg + exp_avg_sq + step) after a step.

Usage: python benchmarks/bench_lora_step.py [--steps 3]
Results: benchmarks/results/lora_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM
from hf_scratchgpt.lora import replace_linear_with_lora, trainable_report

HERE = Path(__file__).resolve().parent
SHAPES = {  # name: (preset, batch, sequence length)
    "gpt2-small": ("gpt2-small", 2, 256),
    "tiny": ("tiny", 16, 128),
}


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def build(preset: str, lora: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = ScratchGPTForCausalLM(ScratchGPTConfig.from_preset(preset, drop_rate=0.0)).train()
    if lora:
        replace_linear_with_lora(model, rank=16, alpha=16)
    params = [p for p in model.parameters() if p.requires_grad]
    return model, torch.optim.AdamW(params, lr=1e-4, weight_decay=0.1)


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant (after one warm-up)")
    args = parser.parse_args()
    results = {}
    for name, (preset, batch, seq) in SHAPES.items():
        runs = {variant: build(preset, variant == "lora") for variant in ("full", "lora")}
        vocab = runs["full"][0].config.vocab_size
        ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(1))
        times: dict[str, list[float]] = {v: [] for v in runs}
        for i in range(args.steps + 1):
            for variant, (model, optimizer) in runs.items():
                seconds = step(model, optimizer, ids)
                if i:
                    times[variant].append(seconds)
        row = {}
        for variant, (model, optimizer) in runs.items():
            report = trainable_report(model)
            row[variant] = {
                "step_seconds": statistics.median(times[variant]),
                "trainable_parameters": report["trainable"],
                "total_parameters": report["total"],
                "optimizer_state_mb": optimizer_state_bytes(optimizer) / 2**20,
            }
        row["full_over_lora_time"] = row["full"]["step_seconds"] / row["lora"]["step_seconds"]
        row["full_over_lora_optimizer_state"] = row["full"]["optimizer_state_mb"] / row["lora"]["optimizer_state_mb"]
        results[name] = {"batch": batch, "sequence": seq, **row}
        for variant in ("full", "lora"):
            r = row[variant]
            print(
                f"{name:>10} {variant:>4}: {r['step_seconds'] * 1000:8.1f} ms/step, "
                f"{r['trainable_parameters']:>12,} trainable, AdamW state {r['optimizer_state_mb']:8.1f} MB"
            )
        print(
            f"{name:>10} full/LoRA: time {row['full_over_lora_time']:.2f}x, "
            f"optimizer state {row['full_over_lora_optimizer_state']:.1f}x"
        )
    meta = {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}
    (HERE / "results").mkdir(exist_ok=True)
    out = HERE / "results" / "lora_step.json"
    out.write_text(json.dumps({"shapes": results, "machine": meta}, indent=2) + "\n")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
