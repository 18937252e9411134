"""Prompt formats (chapter 7): the one place where each instruction prompt style is defined.

Every string of a style lives in one `PromptFormat`; `format_input`, `response_prefix` and the Jinja
`chat_template` saved with a tokenizer are all built from it, so a record rendered by Python and the
same record rendered by `tokenizer.apply_chat_template` are the same bytes.

Styles:

* ``alpaca`` — the book's format, exactly as `llms_from_scratch.ch07.format_input` writes it::

      "Below is an instruction that describes a task. Write a response that appropriately completes the request."
      + "\\n\\n### Instruction:\\n" + instruction
      + "\\n\\n### Input:\\n" + input                # only when input is non-empty
      + "\\n\\n### Response:\\n" + output

* ``phi3`` — the book's chapter-7 exercise format (Phi-3 style)::

      "<|user|>\\n" + instruction
      + "\\n" + input                                # only when input is non-empty
      + "\\n<|assistant|>\\n" + output

* ``chat`` — whatever chat template the tokenizer carries (`render` only).

Records as chat messages (`record_to_messages`): an `{instruction, input, output}` record becomes
one `user` message and one `assistant` message. The user content is the part of the prompt a person
writes: the instruction, followed by the input in the style's own markup when there is one
(alpaca: ``instruction + "\\n\\n### Input:\\n" + input``; phi3: ``instruction + "\\n" + input``).
The assistant content is the output. The Alpaca preamble is not a message: it is the template's
default system text, rendered whenever the conversation does not begin with a `system` message —
so a plain chat user (``[{"role": "user", "content": "..."}]``, as `pipeline("text-generation")`
sends) sees exactly the prompt the model was fine-tuned on, and a given system message replaces
the preamble (an empty one removes it).

The chat templates render a conversation as sections joined by the style's separator
(alpaca ``"\\n\\n"``, phi3 ``"\\n"``): the system text (if any; phi3 writes it after
``"<|system|>\\n"``), each user turn after the user header, each assistant turn after the assistant
header followed by its content and the end token inside ``{% generation %}`` (so
``return_assistant_tokens_mask=True`` marks exactly the response tokens and the end token). With
``add_generation_prompt=True`` the rendering ends with the assistant header. Hence, for every record
``r``::

    apply_chat_template(record_to_messages(r), tokenize=False)
        == format_input(r) + response_prefix("alpaca") + r["output"] + eos_token
    apply_chat_template(record_to_messages(r)[:-1], tokenize=False, add_generation_prompt=True)
        == format_input(r) + response_prefix("alpaca")
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STYLES = ("alpaca", "phi3", "chat")
TEMPLATE_STYLES = ("alpaca", "phi3")


@dataclass(frozen=True)
class PromptFormat:
    """The strings of one prompt style.

    Attributes:
        default_system: System text used when a conversation has no system message (Alpaca's preamble).
        system_header: Written before the system text.
        user_header: Written before each instruction (user turn).
        input_header: Joins a record's non-empty input to its instruction inside the user content.
        assistant_header: Written before each response (assistant turn).
        separator: Joins the sections (system text, turns, generation prompt).
    """

    default_system: str
    system_header: str
    user_header: str
    input_header: str
    assistant_header: str
    separator: str


ALPACA_PREAMBLE = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request."
)

FORMATS: dict[str, PromptFormat] = {
    "alpaca": PromptFormat(
        default_system=ALPACA_PREAMBLE,
        system_header="",
        user_header="### Instruction:\n",
        input_header="\n\n### Input:\n",
        assistant_header="### Response:\n",
        separator="\n\n",
    ),
    "phi3": PromptFormat(
        default_system="",
        system_header="<|system|>\n",
        user_header="<|user|>\n",
        input_header="\n",
        assistant_header="<|assistant|>\n",
        separator="\n",
    ),
}


def prompt_format(style: str) -> PromptFormat:
    """The `PromptFormat` of a template style.

    Raises:
        ValueError: `style` is not one of `TEMPLATE_STYLES`.
    """
    if style not in FORMATS:
        raise ValueError(f"prompt style must be one of {TEMPLATE_STYLES}, got {style!r}")
    return FORMATS[style]


def user_content(entry: Mapping[str, Any], style: str = "alpaca") -> str:
    """The user's part of a record's prompt: the instruction, then the input in the style's markup if non-empty."""
    fmt = prompt_format(style)
    text = entry["instruction"]
    return text + (fmt.input_header + entry["input"] if entry.get("input") else "")


def format_input(entry: Mapping[str, Any], style: str = "alpaca") -> str:
    """The prompt of a record up to where the response begins (the book's `format_input` for `alpaca`).

    Args:
        entry: A record with `instruction` and an optional (possibly empty) `input`.
        style: `alpaca` or `phi3`.

    Raises:
        ValueError: An unknown style.
    """
    fmt = prompt_format(style)
    sections = [fmt.system_header + fmt.default_system] if fmt.default_system else []
    sections.append(fmt.user_header + user_content(entry, style))
    return fmt.separator.join(sections)


def response_prefix(style: str) -> str:
    """What separates a record's prompt from its response (`"\\n\\n### Response:\\n"` for `alpaca`)."""
    fmt = prompt_format(style)
    return fmt.separator + fmt.assistant_header


def record_to_messages(record: Mapping[str, Any], style: str = "alpaca") -> list[dict[str, str]]:
    """A record as chat messages: one `user` and one `assistant` message.

    Chat records (`{"messages": [...]}`) pass through. The user content is `user_content(record,
    style)`; the preamble is left to the chat template (see the module docstring).

    Args:
        record: `{instruction, input, output}` or `{"messages": [...]}`.
        style: The style whose input markup the user content uses (`alpaca` or `phi3`).
    """
    if record.get("messages"):
        return list(record["messages"])
    return [
        {"role": "user", "content": user_content(record, style)},
        {"role": "assistant", "content": record["output"]},
    ]


def _literal(text: str) -> str:
    """`text` as a Jinja string literal (Jinja decodes Python's backslash escapes)."""
    return repr(text)


@functools.cache
def chat_template(style: str = "alpaca") -> str:
    """The Jinja chat template of a style, for `tokenizer.chat_template`.

    The assistant's content and end token sit inside `{% generation %}`, so
    `apply_chat_template(..., return_assistant_tokens_mask=True, return_dict=True)` marks exactly
    those tokens. A leading system message replaces the default system text; a system message
    elsewhere, or an unknown role, raises.

    Raises:
        ValueError: `style` is not one of `TEMPLATE_STYLES`.
    """
    fmt = prompt_format(style)
    sep, assistant = _literal(fmt.separator), _literal(fmt.assistant_header)
    system = f"{_literal(fmt.system_header)} + system" if fmt.system_header else "system"
    return (
        "{%- if messages and messages[0]['role'] == 'system' -%}\n"
        "    {%- set system = messages[0]['content'] -%}\n"
        "    {%- set turns = messages[1:] -%}\n"
        "{%- else -%}\n"
        f"    {{%- set system = {_literal(fmt.default_system)} -%}}\n"
        "    {%- set turns = messages -%}\n"
        "{%- endif -%}\n"
        "{%- set ns = namespace(sep='') -%}\n"
        "{%- if system -%}\n"
        f"    {{{{- {system} -}}}}\n"
        f"    {{%- set ns.sep = {sep} -%}}\n"
        "{%- endif -%}\n"
        "{%- for message in turns -%}\n"
        "    {%- if message['role'] == 'user' -%}\n"
        f"        {{{{- ns.sep + {_literal(fmt.user_header)} + message['content'] -}}}}\n"
        "    {%- elif message['role'] == 'assistant' -%}\n"
        f"        {{{{- ns.sep + {assistant} -}}}}\n"
        "        {%- generation -%}\n"
        "            {{- message['content'] + (eos_token or '') -}}\n"
        "        {%- endgeneration -%}\n"
        "    {%- elif message['role'] == 'system' -%}\n"
        "        {{- raise_exception('a system message may only come first') -}}\n"
        "    {%- else -%}\n"
        "        {{- raise_exception('unknown message role: ' + message['role']) -}}\n"
        "    {%- endif -%}\n"
        f"    {{%- set ns.sep = {sep} -%}}\n"
        "{%- endfor -%}\n"
        "{%- if add_generation_prompt -%}\n"
        f"    {{{{- ns.sep + {assistant} -}}}}\n"
        "{%- endif -%}\n"
    )


def template_style(tokenizer: Any) -> str | None:
    """The style whose template `tokenizer` carries (`alpaca` or `phi3`), or None for any other template."""
    template = getattr(tokenizer, "chat_template", None)
    return next((s for s in TEMPLATE_STYLES if template == chat_template(s)), None)


def render(entry: Mapping[str, Any], style: str, tokenizer: Any = None) -> tuple[str, str]:
    """`(prompt, full_text)` of a record; `full_text` starts with `prompt` and holds the response.

    Args:
        entry: An instruction record, or a chat record (style `chat` only).
        style: `alpaca`, `phi3`, or `chat` (the tokenizer's chat template; instruction records are
            turned into messages with the input markup of the tokenizer's own style, `alpaca` when the
            template is not one of ours).
        tokenizer: Needed for `chat`.

    Raises:
        ValueError: An unknown style, `chat` without a chat template, a chat record in another style,
            or a chat record that does not end with an assistant message.
    """
    if style == "chat":
        if tokenizer is None or not getattr(tokenizer, "chat_template", None):
            raise ValueError("prompt style 'chat' needs a tokenizer with a chat_template")
        messages = record_to_messages(entry, template_style(tokenizer) or "alpaca")
        if messages[-1]["role"] != "assistant":
            raise ValueError("a chat record must end with an assistant message")
        prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        return prompt, full
    if entry.get("messages"):
        raise ValueError(f"chat records need prompt style 'chat', not {style!r}")
    prompt = format_input(entry, style) + response_prefix(style)
    return prompt, prompt + entry["output"]


__all__ = [
    "ALPACA_PREAMBLE",
    "FORMATS",
    "STYLES",
    "TEMPLATE_STYLES",
    "PromptFormat",
    "chat_template",
    "format_input",
    "prompt_format",
    "record_to_messages",
    "render",
    "response_prefix",
    "template_style",
    "user_content",
]
