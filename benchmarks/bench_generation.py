"""Generation benchmark: greedy new tokens per second of ScratchGPT vs transformers' GPT-2 and the book's KV cache.

Three models of the same shape (GPT-2 layout: qkv bias, SDPA where there is a choice) generate the
same number of new tokens greedily from the same random prompts, with and without their KV cache:

- ScratchGPT: `ScratchGPTForCausalLM.generate` (transformers' generation loop on our cache);
- transformers: `GPT2LMHeadModel.generate`;
- the book: its bonus KV-cache loop (`generate_text_simple_cached`) on `llms_from_scratch.kv_cache.gpt2.GPTModel`.

Every (model, cache, batch) case runs once per round, the cases interleaved, after a warm-up
round; the median over rounds gives new tokens/s (batch x new tokens / seconds), reported with the
range and as ratios to ScratchGPT with its cache. End-of-text never stops a row (no eos is set), so
every case generates exactly `--new-tokens` tokens. Without a cache only the smallest batch runs
(the slow cases: several minutes at batch 8) unless `--all-cases` is given. `--device cuda` runs the
models on a GPU (each round waits for the GPU's work to end).

Usage: python -m benchmarks.bench_generation [--layers 6 --emb 384 --heads 6 --context 256 --vocab 8192]
       [--prompt 16 --new-tokens 200 --batches 1 8 --rounds 3 --all-cases] [--device cpu|cuda] [--quick] [--out DIR]
Prints a table and writes DIR/generation.json (default benchmarks/results/).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from benchmarks.common import BOOK_INSTALL, add_common_args, headline, interleaved, ratio, save, spread, synchronizer
from hf_scratchgpt import ScratchGPTConfig, ScratchGPTForCausalLM

HERE = Path(__file__).resolve().parent


def _hf_generate(model: torch.nn.Module, prompt: torch.Tensor, new: int, cache: bool) -> Callable[[], torch.Tensor]:
    mask = torch.ones_like(prompt)

    def run() -> torch.Tensor:
        return model.generate(
            input_ids=prompt, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
            use_cache=cache, eos_token_id=None, pad_token_id=0,
        )  # fmt: skip

    return run


def _book_generate(model: torch.nn.Module, prompt: torch.Tensor, new: int, cache: bool) -> Callable[[], torch.Tensor]:
    """The book's bonus KV-cache loop for its GPT-2 (`kv_cache.gpt2.GPTModel`; the package's own
    `kv_cache.generate` serves its Llama and Qwen models): the prompt once, then one token per step."""
    from llms_from_scratch.kv_cache.utils import KVCache

    def run() -> torch.Tensor:
        idx = prompt
        if not cache:
            for _ in range(new):
                logits = model(idx)
                idx = torch.cat([idx, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)
            return idx
        model.current_pos = 0
        kv = KVCache(n_layers=len(model.trf_blocks))
        logits = model(idx, use_cache=True, cache=kv)
        for _ in range(new):
            next_idx = logits[:, -1].argmax(dim=-1, keepdim=True)
            idx = torch.cat([idx, next_idx], dim=1)
            logits = model(next_idx, use_cache=True, cache=kv)
        return idx

    return run


def build(args: argparse.Namespace) -> dict[str, torch.nn.Module]:
    """The three models, same shape, in eval mode."""
    torch.manual_seed(0)
    ours = ScratchGPTForCausalLM(
        ScratchGPTConfig(
            vocab_size=args.vocab, context_length=args.context, emb_dim=args.emb, n_heads=args.heads,
            n_layers=args.layers, drop_rate=0.0, qkv_bias=True,
        )
    ).eval()  # fmt: skip
    gpt2 = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=args.vocab, n_positions=args.context, n_embd=args.emb, n_head=args.heads, n_layer=args.layers,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="sdpa", bos_token_id=None,
            eos_token_id=None,
        )
    ).eval()  # fmt: skip
    models = {"scratchgpt": ours, "transformers gpt2": gpt2}
    try:
        from llms_from_scratch.kv_cache.gpt2 import GPTModel
    except ImportError:  # the book's package (BOOK_INSTALL); recorded as failed in main
        return models
    cfg = {
        "vocab_size": args.vocab, "context_length": args.context, "emb_dim": args.emb, "n_heads": args.heads,
        "n_layers": args.layers, "drop_rate": 0.0, "qkv_bias": True,
    }  # fmt: skip
    models["book (llms-from-scratch)"] = GPTModel(cfg).eval()
    return models


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--emb", type=int, default=384)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--context", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prompt", type=int, default=16, help="prompt tokens")
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--all-cases", action="store_true", help="also every batch without a cache")
    add_common_args(parser, device=True)
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.emb, args.heads, args.context, args.vocab = 2, 64, 2, 64, 512
        args.prompt, args.new_tokens, args.rounds = 8, 16, 1
    if args.prompt + args.new_tokens > args.context:
        parser.error(f"--prompt + --new-tokens ({args.prompt + args.new_tokens}) exceeds --context {args.context}")

    models = {name: model.to(args.device) for name, model in build(args).items()}
    sync = synchronizer(args.device)
    cases: dict[str, Callable[[], torch.Tensor]] = {}
    for batch in args.batches:
        prompt = torch.randint(1, args.vocab, (batch, args.prompt), generator=torch.Generator().manual_seed(batch))
        prompt = prompt.to(args.device)
        for name, model in models.items():
            make = _book_generate if name.startswith("book") else _hf_generate
            for cache in (True, False) if batch == min(args.batches) or args.all_cases else (True,):
                cases[f"{name}, {'cache' if cache else 'no cache'}, batch {batch}"] = make(
                    model, prompt, args.new_tokens, cache
                )
    failed: dict[str, str] = {}
    if not any(name.startswith("book") for name in models):  # recorded, not hidden: the package is missing
        failed["book (llms-from-scratch)"] = f"not installed: {BOOK_INSTALL}"
    with torch.inference_mode():
        for name, run in list(cases.items()):  # warm-up round, and every case generates the asked length
            try:
                out = run()
            except RuntimeError as err:  # recorded, not hidden: e.g. the book package's GPT-2 cached decoding
                failed[name] = f"{type(err).__name__}: {err}"
                del cases[name]
                continue
            assert out.shape[1] == args.prompt + args.new_tokens, (name, out.shape)
    with torch.inference_mode():  # the warm-up round above; then the timed rounds, interleaved
        times = interleaved(cases, rounds=args.rounds, warmup=0, sync=sync)

    rows = {}
    for name, ts in times.items():
        batch = int(name.rsplit(" ", 1)[1])
        rates = [batch * args.new_tokens / t for t in ts]  # round order: paired with the other cases' rounds
        stats = spread(rates)
        rows[name] = {**stats, "tokens_per_s": stats["median"], "rates": rates, "seconds": ts}
    ratios, headlines = {}, []
    for batch in args.batches:
        ours = rows[f"scratchgpt, cache, batch {batch}"]
        for name, row in rows.items():
            if not name.endswith(f"batch {batch}"):
                continue
            ratios[name] = ours["tokens_per_s"] / row["tokens_per_s"]
            if name.startswith("scratchgpt, cache"):
                continue
            peer = name.removesuffix(f", batch {batch}")
            targets = {"transformers gpt2, cache": 1.3, "scratchgpt, no cache": 5.0} if args.device == "cpu" else {}
            target = targets.get(peer)  # the CPU's targets
            headlines.append(headline(
                "generation", f"greedy, {args.new_tokens} new tokens, batch {batch}, with cache: new tokens/s",
                ours["tokens_per_s"], peer, row["tokens_per_s"], ratio(ours["rates"], row["rates"]), "tok/s", target,
            ))  # fmt: skip
    summary = {"device": args.device, "config": vars(args) | {"out": str(args.out)}, "results": rows,
               "scratchgpt_cached_over": ratios, "failed": failed}  # fmt: skip
    print(
        f"{args.layers} layers, emb {args.emb}, {args.heads} heads, context {args.context}, vocab {args.vocab}; "
        f"prompt {args.prompt}, {args.new_tokens} new tokens, greedy, median of {args.rounds} rounds"
    )
    print("| case | new tokens/s (median) | range | ScratchGPT with cache / this |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['median']:,.0f} | {r['min']:,.0f}-{r['max']:,.0f} | {ratios[name]:.2f}x |")
    for name, why in failed.items():
        print(f"| {name} | failed: {why[:100]} | | |")
    print(save("generation", args.out, summary, headlines))


if __name__ == "__main__":
    main()
