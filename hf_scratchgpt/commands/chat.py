"""`scratchgpt chat MODEL_DIR`: talk with a chat model in the terminal, each reply streamed as it is generated.

The conversation is rendered with the tokenizer's chat template (`apply_chat_template`), so the
model sees exactly the format it was fine-tuned on, and each reply ends at the end-of-text token.
The history stays within the model's context: before a reply, the oldest exchanges are dropped
(the system message is kept) until the prompt leaves room for the reply, and a note says so.

Keys: Ctrl-C during a reply stops it and forgets that exchange (question and partial reply);
Ctrl-C or Ctrl-D at the `you> ` prompt ends the chat normally, with exit status 0, like `/exit`.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from transformers import AutoModelForCausalLM, TextStreamer

from ..prompts import template_style
from ..tokenization import load_tokenizer
from .model import check_generation_options

COMMANDS = "/reset clears the history, /help shows this, /exit (or Ctrl-D) ends the chat"
PROMPT, REPLY = "you> ", "gpt> "


def chat(
    model_dir: str,
    *,
    system: str | None = None,
    max_new_tokens: int = 200,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    repetition_penalty: float = 1.0,
    seed: int = 123,
    tokenizer: str | None = None,
) -> None:
    """Chat with a saved model in the terminal, the replies streamed (greedy unless a temperature is given).

    Args:
        model_dir: Folder with the model and a tokenizer that carries a chat template (or a Hub id when online).
        system: System message that starts every conversation (default: the chat template's own, if any).
        max_new_tokens: Most tokens of one reply; at most half of the model's context is kept for it.
        temperature: 0 is greedy; above 0 samples.
        top_k: Sample only among the k most likely tokens.
        top_p: Sample only among the smallest set of tokens whose probability reaches p.
        repetition_penalty: Above 1 makes tokens already in the conversation less likely.
        seed: Random seed for sampling (set once; the whole session is reproducible).
        tokenizer: Tokenizer to use instead of the model folder's own.
    """
    where = check_generation_options(model_dir, temperature, max_new_tokens)
    if repetition_penalty <= 0:
        raise ValueError(f"--repetition-penalty must be > 0, got {repetition_penalty}")
    tok = load_tokenizer(tokenizer if tokenizer is not None else where)
    if not getattr(tok, "chat_template", None):
        raise ValueError(
            f"the tokenizer of {tokenizer or model_dir} has no chat template, so it cannot render a conversation; "
            "chat with a model fine-tuned by `scratchgpt finetune-instruct` (it carries the template of its prompt "
            "style), or give --tokenizer a tokenizer with a chat_template"
        )
    model = AutoModelForCausalLM.from_pretrained(where).eval()
    context = model.config.max_position_embeddings
    room = min(max_new_tokens, context // 2)  # the reply's share; the prompt keeps at least half the context
    eos = model.generation_config.eos_token_id
    eos = eos if eos is not None else tok.eos_token_id
    options: dict[str, Any] = {"max_new_tokens": room, "eos_token_id": eos, "repetition_penalty": repetition_penalty}
    options["pad_token_id"] = tok.pad_token_id if tok.pad_token_id is not None else eos
    if temperature > 0:
        options.update(do_sample=True, temperature=temperature, top_k=top_k, top_p=top_p)
    else:
        options["do_sample"] = False
    torch.manual_seed(seed)
    style = template_style(tok) or "custom"
    print(f"chatting with {model_dir} ({style} chat template, {context}-token context, replies up to {room} tokens)")
    print(f"{COMMANDS}; Ctrl-C stops a reply")
    head = [{"role": "system", "content": system}] if system else []
    history: list[dict[str, str]] = []
    while True:
        try:
            text = input(PROMPT)
        except (EOFError, KeyboardInterrupt):  # Ctrl-D / Ctrl-C at the prompt: a normal end
            print()
            return
        command = text.strip()
        if command in ("/exit", "/quit"):
            return
        if command == "/reset":
            history.clear()
            _note("(history cleared)")
            continue
        if command == "/help":
            _note(f"({COMMANDS}; Ctrl-C stops a reply)")
            continue
        if command.startswith("/") and " " not in command:  # a typo of a command, not a message
            _note(f"(unknown command {command}; {COMMANDS})")
            continue
        if not command:
            continue
        turn = [{"role": "user", "content": text}]
        ids = _prompt_ids(tok, head + turn)
        if ids.shape[1] + room > context:
            _note(
                f"(this message takes {ids.shape[1]} tokens as a prompt; with {room} for the reply it does not fit "
                f"the {context}-token context, so it was not sent: write a shorter one)"
            )
            continue
        dropped = 0
        while True:
            ids = _prompt_ids(tok, head + history + turn)
            if ids.shape[1] + room <= context:
                break
            del history[:2]  # the oldest exchange: a user message and its reply
            dropped += 1
        if dropped:
            turns = "oldest turn" if dropped == 1 else f"{dropped} oldest turns"
            _note(f"(dropped the {turns} to fit the {context}-token context)")
        reply = _reply(model, tok, ids, options)
        if reply is not None:
            history += turn + [{"role": "assistant", "content": reply}]


def _prompt_ids(tok: Any, messages: list[dict[str, str]]) -> torch.Tensor:
    """`(1, T)` ids of the conversation rendered by the chat template, ending where the assistant's reply begins."""
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tok(text, add_special_tokens=False, return_tensors="pt", verbose=False)["input_ids"]  # no length warning


def _reply(model: Any, tok: Any, ids: torch.Tensor, options: dict[str, Any]) -> str | None:
    """Generate and stream one reply; its text without the end token, or None when Ctrl-C stopped it."""
    print(REPLY, end="", flush=True)
    streamer = TextStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    try:
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), streamer=streamer, **options)
    except KeyboardInterrupt:
        print(flush=True)
        _note("(reply stopped; this question and the partial reply are not kept in the history)")
        return None
    new = out[0, ids.shape[1] :].tolist()
    eos = options["eos_token_id"]
    if new and not (new[-1] in eos if isinstance(eos, list) else new[-1] == eos):
        _note(f"(the reply reached its limit of {len(new)} tokens and was cut)")
    return tok.decode(new, skip_special_tokens=True)


def _note(text: str) -> None:
    """A line about the chat itself (not the model's words), on stderr."""
    sys.stdout.flush()
    print(text, file=sys.stderr, flush=True)
