"""Every public name of `llms_from_scratch` 1.0.19's modules exists in `hf_scratchgpt.book`, same signature.

Compatible means: the book's parameters in the book's order with the book's defaults; anything we add
comes after them, with a default. Classes are compared by constructor and by their public methods
(`forward` too, except for the GPT models, whose book call `model(in_idx)` is tested by behaviour).
"""

import importlib
import inspect

import pytest
from torch import nn

MODULES = [
    "ch02",
    "ch03",
    "ch04",
    "ch05",
    "ch06",
    "ch07",
    "generate",
    "kv_cache.gpt2",
    "kv_cache.generate",
    "kv_cache.utils",
    "appendix_d",
    "appendix_e",
]
GPT_MODELS = {"GPTModel", "GPTModelFast"}


def _book_public_names(module):
    """Classes and functions of the book's package that `module` offers (defined there or imported from a sibling)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(obj) or inspect.isfunction(obj))
        and obj.__module__.startswith("llms_from_scratch")
    )


def _parameters(obj):
    if inspect.isclass(obj) and obj.__init__ is nn.Module.__init__:  # no own __init__: takes nothing
        return []
    return list(inspect.signature(obj).parameters.values())


def _assert_compatible(book, ours, what):
    book_params, our_params = _parameters(book), _parameters(ours)
    assert [(p.name, p.default) for p in our_params[: len(book_params)]] == [
        (p.name, p.default) for p in book_params
    ], what
    for p in our_params[: len(book_params)]:
        assert p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD or p.kind in {
            b.kind for b in book_params if b.name == p.name
        }, (what, p.name)
    for extra in our_params[len(book_params) :]:
        assert extra.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD), (what, extra)
        assert extra.default is not inspect.Parameter.empty, (what, extra.name)


@pytest.mark.parametrize("name", MODULES)
def test_public_names_and_signatures(name):
    book = importlib.import_module(f"llms_from_scratch.{name}")
    ours = importlib.import_module(f"hf_scratchgpt.book.{name}")
    names = _book_public_names(book)
    assert names, name
    for public in names:
        assert hasattr(ours, public), f"hf_scratchgpt.book.{name} lacks {public}"
        book_obj, our_obj = getattr(book, public), getattr(ours, public)
        _assert_compatible(book_obj, our_obj, f"{name}.{public}")
        if not inspect.isclass(book_obj):
            continue
        for method, func in vars(book_obj).items():
            if method.startswith("_") or not callable(func) or (method == "forward" and public in GPT_MODELS):
                continue
            _assert_compatible(func, getattr(our_obj, method), f"{name}.{public}.{method}")


def test_book_module_names_map_to_ours():
    """The modules named here are the ones this package covers (chapters 2 to 7, appendices D and E)."""
    import hf_scratchgpt.book as book

    assert book.__doc__ and "use_local_gpt2_files" in book.__doc__
    for name in MODULES:
        importlib.import_module(f"hf_scratchgpt.book.{name}")
