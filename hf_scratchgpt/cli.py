"""`scratchgpt <verb>`: one mechanism for every verb, grouped by family, and one error handler.

Each verb is a typed function (its options come from the signature, `hf_scratchgpt.options`) or a
training verb that takes a typed config (`--config RECIPE.yaml` plus `--key value` overrides).
A usage error or bad input prints one line naming the problem and exits with 2; any other failure
prints one line and exits with 1; `--debug` (anywhere) shows the traceback instead. Ctrl-C exits
with 130 after saying what was kept.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Any

from huggingface_hub.utils import logging as hub_logging
from transformers.utils import logging as hf_logging

from .commands import (
    chat,
    classify,
    convert_book,
    convert_gpt2,
    evaluate,
    export_gguf,
    export_gpt2,
    generate,
    hub_pull,
    hub_push,
    init_model,
    make_instruction_suite,
    split_classifier_data,
    train_tokenizer,
)
from .options import config_class, function_options, parse_args, resolve_config
from .training.classify import finetune_classifier
from .training.instruct import finetune_instruct
from .training.preference import finetune_dpo
from .training.pretrain import pretrain

# family -> verb -> function
VERBS: dict[str, dict[str, Callable[..., Any]]] = {
    "model": {
        "train-tokenizer": train_tokenizer,
        "init-model": init_model,
        "generate": generate,
        "classify": classify,
        "chat": chat,
    },
    "data": {"split-classifier-data": split_classifier_data, "make-instruction-suite": make_instruction_suite},
    "convert": {
        "convert-gpt2": convert_gpt2,
        "export-gpt2": export_gpt2,
        "export-gguf": export_gguf,
        "convert-book": convert_book,
    },
    "train": {
        "pretrain": pretrain,
        "finetune-classifier": finetune_classifier,
        "finetune-instruct": finetune_instruct,
        "finetune-dpo": finetune_dpo,
    },
    "hub": {"push": hub_push, "pull": hub_pull},
    "evaluate": {"evaluate": evaluate},
}
BAD_INPUT = (ValueError, OSError, ImportError)  # UsageError is a ValueError; missing extras are ImportErrors


def find_verb(name: str) -> Callable[..., Any]:
    """The function of verb `name`.

    Raises:
        ValueError: An unknown verb, with the list of known ones.
    """
    for verbs in VERBS.values():
        if name in verbs:
            return verbs[name]
    known = ", ".join(v for verbs in VERBS.values() for v in verbs)
    raise ValueError(f"unknown verb {name!r}; choose one of {known}")


def run_verb(name: str, argv: list[str]) -> Any:
    """Parse `argv` for verb `name` and call it."""
    fn = find_verb(name)
    prog = f"scratchgpt {name}"
    cls = config_class(fn)
    if cls is not None:
        return fn(resolve_config(cls, argv, prog=prog, summary=_summary(fn)))
    _, values = parse_args(prog, _summary(fn), function_options(fn), argv)
    return fn(**values)


def _summary(fn: Callable[..., Any]) -> str:
    return (inspect.getdoc(fn) or "").split("\n\n")[0]


def usage() -> str:
    """The top-level help: every verb by family."""
    lines = ["usage: scratchgpt <verb> [options] [--debug]   (scratchgpt --version: the package's version)", ""]
    width = max(len(verb) for verbs in VERBS.values() for verb in verbs)
    for family, verbs in VERBS.items():
        if verbs:
            lines.append(f"{family}:")
            lines += [f"  {verb:<{width}}  {_summary(fn).splitlines()[0]}" for verb, fn in verbs.items()]
    lines += ["", "`scratchgpt <verb> --help` lists a verb's options; training verbs take --config RECIPE.yaml."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `scratchgpt` and `python -m hf_scratchgpt`; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] == "--version":
        from . import __version__

        print(f"scratchgpt (hf-scratchgpt) {__version__}")
        return 0
    verb, rest = argv[0], argv[1:]
    hf_logging.disable_progress_bar()  # weight-loading bars are noise on a command line
    hub_logging.set_verbosity_error()  # so are the Hub client's retry lines (its final error is reported)
    try:
        run_verb(verb, rest)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except KeyboardInterrupt as stop:
        if debug:
            raise
        print(f"scratchgpt {verb}: {str(stop) or 'interrupted'}", file=sys.stderr)
        return 130
    except BAD_INPUT as err:
        if debug:
            raise
        print(f"scratchgpt {verb}: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 (the one handler: never a traceback without --debug)
        if debug:
            raise
        where = "(--debug shows where)"
        print(f"scratchgpt {verb}: error: {type(err).__name__}: {_one_line(err)} {where}", file=sys.stderr)
        return 1
    return 0


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
