"""Typed options: the one mechanism behind every `scratchgpt` verb and every YAML recipe.

A verb is a typed function or takes a typed config (a dataclass). Its options are derived from the
function's signature or the dataclass's fields: `max_new_tokens: int = 50` becomes
`--max-new-tokens N`, a parameter without a default (not keyword-only) becomes a positional
argument, `bool` options take `--flag`, `--flag false` or `--no-flag`, `list[...]` options take
several values, and `null`/`none` means None for optional ones. Help texts come from the
docstring's `Args:` (function) or `Attributes:` (dataclass) section.

Values from the command line and from a recipe (`--config RECIPE.yaml`, a YAML mapping of the same
keys) go through one converter, so both give the same error: the option or key, what was expected
and what was given. Every problem is a `UsageError` or a `ValueError` with one line of text.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

_EMPTY = inspect.Parameter.empty


class UsageError(ValueError):
    """A command line that cannot be parsed (unknown option, missing value or argument)."""


@dataclass(frozen=True)
class Option:
    """One option of a verb: its name, type, default (`_EMPTY`: required) and help text."""

    name: str
    type: Any
    default: Any = _EMPTY
    positional: bool = False
    help: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


# ----------------------------------------------------------------------------- schemas


def _docs(obj: Any, section: str) -> dict[str, str]:
    """Map name -> description from a Google-style docstring section (`Args:` or `Attributes:`)."""
    doc = inspect.getdoc(obj) or ""
    match = re.search(rf"^{section}:\n(.*?)(?:^\S|\Z)", doc, flags=re.S | re.M)
    docs: dict[str, str] = {}
    if match:
        for name, text in re.findall(r"^ {4}(\w+)[^:\n]*:\s*(.*?)(?=^ {4}\w+[^:\n]*:|\Z)", match.group(1), re.S | re.M):
            docs[name] = " ".join(text.split())
    return docs


def config_class(fn: Callable[..., Any]) -> type | None:
    """The dataclass a verb takes as its only parameter (a config verb), else None."""
    params = list(inspect.signature(fn).parameters.values())
    if len(params) != 1:
        return None
    hint = typing.get_type_hints(fn).get(params[0].name)
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def config_options(cls: type) -> list[Option]:
    """The options of a config dataclass: every init field, all optional (they have defaults)."""
    hints = typing.get_type_hints(cls)
    docs = {k: v for base in reversed(cls.__mro__) for k, v in _docs(base, "Attributes").items()}
    options = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        options.append(Option(f.name, hints[f.name], default, help=docs.get(f.name)))
    return options


def function_options(fn: Callable[..., Any]) -> list[Option]:
    """The options of a typed function, from its signature, type hints and docstring."""
    hints = typing.get_type_hints(fn)
    docs = _docs(fn, "Args")
    options = []
    for name, param in inspect.signature(fn).parameters.items():
        positional = param.default is _EMPTY and param.kind is not inspect.Parameter.KEYWORD_ONLY
        options.append(Option(name, hints.get(name, str), param.default, positional, docs.get(name)))
    return options


# ----------------------------------------------------------------------------- values


def _optional_inner(tp: Any) -> Any | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return None


def convert(name: str, value: Any, tp: Any) -> Any:
    """Convert a YAML or command-line value to the type `tp`; errors name the option or key."""
    inner = _optional_inner(tp)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return convert(name, value, inner)
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        items = value if isinstance(value, list) else [value]
        return [convert(name, v, item) for v in items]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ValueError(f"{name}: expected true or false, got {value!r}")
    if tp in (int, float):
        if isinstance(value, bool):
            raise ValueError(f"{name}: expected {tp.__name__}, got {value!r}")
        try:
            converted = tp(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(f"{name}: expected int, got {value!r}")
        return converted
    if tp in (str, Path):
        if isinstance(value, (dict, list)):
            raise ValueError(f"{name}: expected text, got {value!r}")
        return tp(value)
    return value


def _did_you_mean(name: str, valid: list[str]) -> str:
    """` (did you mean X?)` naming the closest valid spelling of a mistyped name, or an empty string."""
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def from_mapping(cls: type, values: dict[str, Any], where: str) -> Any:
    """Build the dataclass `cls` from a mapping; unknown keys raise `ValueError` listing the valid ones."""
    types_ = {o.name: o.type for o in config_options(cls)}
    unknown = sorted(set(values) - set(types_))
    if unknown:
        hint = _did_you_mean(str(unknown[0]), sorted(types_))
        raise ValueError(f"{where}: unknown key(s) {unknown}{hint}; valid keys: {sorted(types_)}")
    return cls(**{k: convert(k, v, types_[k]) for k, v in values.items()})


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a recipe file as a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a recipe must be a mapping of options, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- the command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:
        needs = re.match(r"argument (\S+?)(?:/\S+)?: expected (?:one|at least one) argument", message)
        raise UsageError(f"{needs.group(1)} needs a value" if needs else message)


def _metavar(option: Option) -> str:
    return option.name.upper() if option.positional else option.name.upper().replace("_", "-")


def build_parser(prog: str, summary: str, options: list[Option], recipe: bool) -> argparse.ArgumentParser:
    """An argparse parser that collects only the options given (converted later by `convert`)."""
    words = [prog, *(_metavar(o) for o in options if o.positional), "[--config RECIPE.yaml]" if recipe else ""]
    usage = " ".join(w for w in words if w) + " [--option value ...]"
    parser = _Parser(prog=prog, usage=usage, description=summary, allow_abbrev=False)
    if recipe:
        parser.add_argument("--config", metavar="RECIPE.yaml", default=argparse.SUPPRESS, help="YAML recipe of options")
    for o in options:
        mentioned = o.help is not None and "default" in o.help
        shown = "" if o.default is _EMPTY or mentioned else f" (default: {o.default!r})"
        text = ((o.help or "") + shown).replace("%", "%%")  # argparse %-formats help: "5 %" is literal
        if o.positional:  # a list takes every remaining word (none too: another option may give them)
            many = typing.get_origin(o.type) is list
            parser.add_argument(o.name, metavar=_metavar(o) + (" ..." if many else ""), help=text,
                                **({"nargs": "*"} if many else {}))  # fmt: skip
            continue
        kwargs: dict[str, Any] = {"dest": o.name, "default": argparse.SUPPRESS, "help": text}
        inner = _optional_inner(o.type) or o.type
        if inner is bool:
            parser.add_argument(o.flag, nargs="?", const="true", metavar="true|false", **kwargs)
            parser.add_argument("--no-" + o.flag[2:], dest=o.name, action="store_const", const="false",
                                default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # fmt: skip
        elif typing.get_origin(inner) is list:
            parser.add_argument(o.flag, nargs="+", metavar="VALUE", **kwargs)
        else:
            parser.add_argument(o.flag, metavar=_metavar(o), required=o.default is _EMPTY, **kwargs)
    return parser


def parse_args(
    prog: str, summary: str, options: list[Option], argv: list[str], recipe: bool = False
) -> tuple[str | None, dict[str, Any]]:
    """Parse `argv`: the recipe path (with `recipe`) and the converted values of the options given.

    Raises:
        UsageError: An unknown option (with the list of valid ones), a stray argument, a missing
            value or a missing required option.
        ValueError: A value of the wrong type, naming the option.
    """
    parser = build_parser(prog, summary, options, recipe)
    namespace, rest = parser.parse_known_args(argv)
    if rest:
        flags = ", ".join(o.flag for o in sorted(options, key=lambda o: o.name) if not o.positional)
        if rest[0].startswith("-"):
            flag = rest[0].split("=")[0]
            hint = _did_you_mean(flag, [o.flag for o in options if not o.positional])
            raise UsageError(f"unknown option {flag}{hint}; valid options: {flags}")
        i = argv.index(rest[0])
        if i >= 2 and argv[i - 2].startswith("--") and "=" not in argv[i - 2]:
            raise UsageError(f"{argv[i - 2]} takes one value, got {argv[i - 1 : i + 1]}")
        raise UsageError(f"unexpected argument {rest[0]!r}; options look like --name value")
    given = vars(namespace)
    config = given.pop("config", None)
    by_name = {o.name: o for o in options}
    return config, {k: convert(by_name[k].flag if not by_name[k].positional else k, v, by_name[k].type)
                    for k, v in given.items()}  # fmt: skip


def resolve_config(cls: type, argv: list[str], prog: str | None = None, summary: str | None = None) -> Any:
    """The effective configuration: dataclass defaults < recipe (`--config`) < command-line options.

    A config class may define `resolve(values, where)` (a classmethod) to build itself from the
    merged values (training runs use it to continue the run saved in their output folder).
    """
    summary = summary if summary is not None else (inspect.getdoc(cls) or "").split("\n\n")[0]
    recipe, given = parse_args(prog or cls.__name__, summary, config_options(cls), argv, recipe=True)
    values = load_recipe(recipe) if recipe else {}
    values.update(given)
    where = recipe or "command line"
    if hasattr(cls, "resolve"):
        return cls.resolve(values, where)
    cfg = from_mapping(cls, values, where)
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg
