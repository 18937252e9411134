"""`scratchgpt <verb>`: every verb is a plain typed function; its parser is derived from the signature.

Parameters without a default are positional (`MODEL_DIR`), keyword-only ones are required options
and the others optional ones (`max_new_tokens` -> `--max-new-tokens`); `bool` options take
`--flag/--no-flag`, `list[...]` options take several values. Help texts come from the function's Google-style docstring.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any


def _verbs() -> dict[str, Callable[..., Any]]:
    from . import commands, convert_commands
    from .training.pretrain import pretrain

    return {
        "pretrain": pretrain,
        "train-tokenizer": commands.train_tokenizer,
        "init-model": commands.init_model,
        "generate": commands.generate,
        "convert-gpt2": convert_commands.convert_gpt2,
        "export-gpt2": convert_commands.export_gpt2,
        "convert-book": convert_commands.convert_book,
    }


def _arg_docs(fn: Callable[..., Any]) -> dict[str, str]:
    """Map parameter name -> description from the docstring's `Args:` section."""
    doc = inspect.getdoc(fn) or ""
    match = re.search(r"^Args:\n(.*?)(?:^\S|\Z)", doc, flags=re.S | re.M)
    docs: dict[str, str] = {}
    if match:
        for name, text in re.findall(r"^ {4}(\w+)[^:\n]*:\s*(.*?)(?=^ {4}\w+[^:\n]*:|\Z)", match.group(1), re.S | re.M):
            docs[name] = " ".join(text.split())
    return docs


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build_parser(fn: Callable[..., Any], prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser for `fn`, from its type hints, defaults and docstring."""
    hints = typing.get_type_hints(fn)
    docs = _arg_docs(fn)
    summary = (inspect.getdoc(fn) or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog=prog, description=summary)
    for name, param in inspect.signature(fn).parameters.items():
        tp = _unwrap_optional(hints.get(name, str))
        kwargs: dict[str, Any] = {"help": docs.get(name)}
        if typing.get_origin(tp) is list:
            kwargs["type"] = typing.get_args(tp)[0] if typing.get_args(tp) else str
            kwargs["nargs"] = "+"
        elif tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = tp
        required = param.default is inspect.Parameter.empty
        if required and param.kind is not inspect.Parameter.KEYWORD_ONLY:
            parser.add_argument(name, metavar=name.upper(), **kwargs)
            continue
        if "action" not in kwargs:
            kwargs["metavar"] = name.upper().replace("_", "-") if "nargs" not in kwargs else "VALUE"
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = param.default
        parser.add_argument("--" + name.replace("_", "-"), dest=name, **kwargs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scratchgpt` and `python -m hf_scratchgpt`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbs = _verbs()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: scratchgpt <verb> [options]\n\nverbs:")
        for verb, fn in verbs.items():
            print(f"  {verb:<18} {(inspect.getdoc(fn) or '').splitlines()[0]}")
        print("\n`scratchgpt <verb> --help` lists a verb's options.")
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in verbs:
        print(f"scratchgpt: unknown verb {verb!r}; choose one of {', '.join(verbs)}", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # weight-loading bars are noise on a command line
    if verb == "pretrain":  # recipe-driven: --config FILE and --key value overrides of PretrainConfig
        from .training.pretrain import pretrain_cli

        return pretrain_cli(rest)
    fn = verbs[verb]
    args = build_parser(fn, prog=f"scratchgpt {verb}").parse_args(rest)
    try:
        fn(**vars(args))
    except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, PermissionError, OSError) as err:
        print(f"scratchgpt {verb}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
