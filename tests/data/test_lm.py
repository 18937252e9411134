"""The language-modelling pipeline: whole-stream windows, splits, streaming == in-memory, options, errors."""

import ast
import dataclasses
import graphlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

import hf_scratchgpt.data
from hf_scratchgpt.data import sources
from hf_scratchgpt.data.in_memory import tokenize_documents
from hf_scratchgpt.data.lm import content_hash, mix_datasets, mixing_probabilities, prepare_lm_datasets
from hf_scratchgpt.data.lm_options import LMOptions
from hf_scratchgpt.data.sources import load_documents
from hf_scratchgpt.data.splits import SplitPlan
from hf_scratchgpt.data.tokenize import encode, iter_exact_chunk_tokens, split_at_safe_spaces
from hf_scratchgpt.data.windows import gather_windows, iter_windows


def _rows(ds, column="input_ids"):
    return [list(r[column]) for r in ds]


@pytest.fixture
def many_docs(tmp_path):
    """2,500 small documents, more than one map batch (1,000 rows), with some exact repeats."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while seven wizards box".split()
    docs = [" ".join(rng.choice(words) for _ in range(rng.randrange(3, 12))) for _ in range(2300)]
    docs += docs[:200]  # 200 duplicates
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps({"text": d}) for d in docs), encoding="utf-8")
    return path, docs


def test_windows_cover_the_whole_stream_across_map_batches(many_docs, gpt2_tokenizer):
    path, docs = many_docs
    data = prepare_lm_datasets(path, gpt2_tokenizer, max_length=16, stride=5, val_fraction=0)
    eos = gpt2_tokenizer.eos_token_id
    stream = []
    for i, d in enumerate(docs):
        stream += ([eos] if i else []) + gpt2_tokenizer(d)["input_ids"]
    expected = [stream[s : s + 16] for s in range(0, len(stream) - 16, 5)]
    assert _rows(data.train) == expected  # book formula, separators between documents, no gaps
    assert _rows(data.train, "labels") == expected  # HF convention: labels == input_ids
    assert data.validation is None and data.provenance["train_tokens"] == len(stream)


def test_book_character_split_on_the_verdict(shared_data, gpt2_tokenizer):
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    data = prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=256, stride=256)
    split = int(0.9 * len(text))
    train_ids = gpt2_tokenizer(text[:split])["input_ids"]
    val_ids = gpt2_tokenizer(text[split:])["input_ids"]
    assert _rows(data.train) == [train_ids[s : s + 256] for s in range(0, len(train_ids) - 256, 256)]
    assert _rows(data.validation) == [val_ids[s : s + 256] for s in range(0, len(val_ids) - 256, 256)]
    assert (len(data.train), len(data.validation)) == (18, 2)  # the book's 9 x 2 and 1 x 2 windows


def test_shifted_labels_are_the_books_input_target_pairs(shared_data, gpt2_tokenizer):
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    data = prepare_lm_datasets(
        shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=256, stride=256, shifted_labels=True
    )
    ids = gpt2_tokenizer(text[: int(0.9 * len(text))])["input_ids"]
    starts = range(0, len(ids) - 256, 256)
    assert data.train.column_names == ["input_ids", "shift_labels"]
    assert _rows(data.train) == [ids[s : s + 256] for s in starts]
    assert _rows(data.train, "shift_labels") == [ids[s + 1 : s + 257] for s in starts]
    assert (len(data.train), len(data.validation)) == (18, 2)
    with pytest.raises(ValueError, match="shifted_labels and pack"):
        prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, shifted_labels=True, pack=True)
    with pytest.raises(ValueError, match="in-memory datasets only"):
        prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, shifted_labels=True, streaming=True)


def test_character_split_cuts_the_straddling_document(tmp_path, gpt2_tokenizer):
    for name, text in (("a.txt", "alpha " * 30), ("b.txt", "beta " * 30), ("c.txt", "gamma " * 30)):
        (tmp_path / name).write_text(text)
    docs = [p.read_text() for p in sorted(tmp_path.glob("*.txt"))]
    joined = "".join(docs)
    half = len(joined) // 2
    plan = SplitPlan.by_characters(np.array([len(d) for d in docs]), 0.5)
    assert (plan.cut_doc, plan.cut_char) == (1, half - len(docs[0]))  # b.txt is cut in two
    data = prepare_lm_datasets(sorted(tmp_path.glob("*.txt")), gpt2_tokenizer, max_length=4, stride=1, val_fraction=0.5)
    eos = [gpt2_tokenizer.eos_token_id]
    enc = lambda t: gpt2_tokenizer(t)["input_ids"]
    train = enc(docs[0]) + eos + enc(docs[1][: plan.cut_char])
    val = enc(docs[1][plan.cut_char :]) + eos + enc(docs[2])
    assert data.provenance["train_tokens"] == len(train) and data.provenance["validation_tokens"] == len(val)
    assert _rows(data.train)[-1] == train[-5:-1] and _rows(data.validation)[0] == val[:4]


def test_document_split_is_seeded(many_docs, gpt2_tokenizer):
    path, _ = many_docs
    a = prepare_lm_datasets(path, gpt2_tokenizer, max_length=8, split_by="documents", val_fraction=0.2, seed=1)
    b = prepare_lm_datasets(path, gpt2_tokenizer, max_length=8, split_by="documents", val_fraction=0.2, seed=1)
    c = prepare_lm_datasets(path, gpt2_tokenizer, max_length=8, split_by="documents", val_fraction=0.2, seed=2)
    assert a.provenance["train_sha256"] == b.provenance["train_sha256"] != c.provenance["train_sha256"]
    share = a.provenance["validation_tokens"] / (a.provenance["train_tokens"] + a.provenance["validation_tokens"])
    assert 0.15 < share < 0.25


@pytest.mark.parametrize(
    "options",
    [
        {"split_by": "characters"},
        {"split_by": "documents", "val_fraction": 0.3, "seed": 7},
        {"pack": True},
        {"dedup": True, "stride": 3},
        {"val_fraction": 0.0, "stride": 40},
    ],
)
def test_streaming_yields_the_same_windows_as_in_memory(tmp_path, monkeypatch, shared_data, gpt2_tokenizer, options):
    monkeypatch.setattr(sources, "CHUNK_BYTES", 97)  # read in tiny pieces: exercises the exact chunk tokenizer
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8")
    for i, part in enumerate([text[:9000], text[9000:15000], text[15000:], text[:9000]]):
        (tmp_path / f"part{i}.txt").write_text(part, encoding="utf-8")
    files = sorted(tmp_path.glob("part*.txt"))
    memory = prepare_lm_datasets(files, gpt2_tokenizer, max_length=32, **options)
    stream = prepare_lm_datasets(files, gpt2_tokenizer, max_length=32, streaming=True, **options)
    columns = ["input_ids", "labels"] + (["position_ids"] if options.get("pack") else [])
    for name in ("train", "validation"):
        mem, st = getattr(memory, name), getattr(stream, name)
        if mem is None:
            assert st is None
            continue
        streamed = list(st)
        for column in columns:
            assert [r[column] for r in streamed] == _rows(mem, column), (name, column)


def test_streaming_records_and_rank_split(many_docs, gpt2_tokenizer):
    path, _ = many_docs
    memory = prepare_lm_datasets(path, gpt2_tokenizer, max_length=16, val_fraction=0)
    rank0 = prepare_lm_datasets(
        path, gpt2_tokenizer, max_length=16, val_fraction=0, streaming=True, rank=0, world_size=2
    )
    rank1 = prepare_lm_datasets(
        path, gpt2_tokenizer, max_length=16, val_fraction=0, streaming=True, rank=1, world_size=2
    )
    all_rows = _rows(memory.train)
    assert _rows(rank0.train) == all_rows[0::2] and _rows(rank1.train) == all_rows[1::2]


def test_exact_chunk_tokenization(shared_data, gpt2_tokenizer, verdict_tokenizer):
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8") + "  \n\n  tail   spaces\t\n"
    for tok in (gpt2_tokenizer, verdict_tokenizer):
        whole = tok(text)["input_ids"]
        for size in (1, 7, 50, 1000):
            pieces = [text[i : i + size] for i in range(0, len(text), size)]
            assert [t for ids in iter_exact_chunk_tokens(pieces, tok) for t in ids] == whole, size


def test_packing_restarts_positions_after_each_separator(many_docs, gpt2_tokenizer):
    path, _ = many_docs
    data = prepare_lm_datasets(path, gpt2_tokenizer, max_length=24, pack=True, val_fraction=0)
    eos = gpt2_tokenizer.eos_token_id
    for row in data.train.select(range(20)):
        ids, pos = row["input_ids"], row["position_ids"]
        assert pos[0] == 0
        for j in range(1, 24):
            assert pos[j] == (0 if ids[j - 1] == eos else pos[j - 1] + 1)
    assert data.provenance["stride"] == 24  # packed rows do not overlap


def test_dedup_drops_exact_repeats(many_docs, gpt2_tokenizer):
    path, docs = many_docs
    data = prepare_lm_datasets(path, gpt2_tokenizer, max_length=8, dedup=True, val_fraction=0)
    assert data.provenance["documents"] == 2500
    assert data.provenance["documents_after_dedup"] == len(dict.fromkeys(docs))


def test_mixing_probabilities_and_interleave(gpt2_tokenizer, shared_data):
    p = mixing_probabilities([100, 1], alpha=0.7)
    assert p[0] == pytest.approx(100**0.7 / (100**0.7 + 1))
    assert mixing_probabilities([3, 3]) == [0.5, 0.5]
    with pytest.raises(ValueError, match="positive"):
        mixing_probabilities([1, 0])
    a = prepare_lm_datasets("builtin", gpt2_tokenizer, max_length=16, val_fraction=0).train
    b = prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=16, val_fraction=0).train
    mixed = mix_datasets([a, b], alpha=0.7, seed=0)
    assert len(mixed) >= len(a) + len(b)  # all_exhausted: every window of both appears
    b_rows = {tuple(r) for r in _rows(b)}
    from_b = sum(tuple(r) in b_rows for r in _rows(mixed.select(range(2000))))
    expected = mixing_probabilities([len(a), len(b)])[1]
    assert abs(from_b / 2000 - expected) < 0.05


def test_content_hash_tracks_the_data(gpt2_tokenizer, shared_data):
    a = prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=64)
    b = prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=64)
    c = prepare_lm_datasets(shared_data / "the-verdict.txt", gpt2_tokenizer, max_length=63)
    assert a.provenance["train_sha256"] == b.provenance["train_sha256"] == content_hash(a.train)
    assert a.provenance["train_sha256"] != c.provenance["train_sha256"]


def test_tokenization_is_a_cached_map(shared_data, gpt2_tokenizer):
    plan = SplitPlan.by_characters(np.array([20479]), 0.9)
    first = tokenize_documents(load_documents(shared_data / "the-verdict.txt"), gpt2_tokenizer, plan)
    again = tokenize_documents(load_documents(shared_data / "the-verdict.txt"), gpt2_tokenizer, plan)
    assert first.cache_files and first.cache_files == again.cache_files  # same key: reused from disk
    other = tokenize_documents(load_documents(shared_data / "the-verdict.txt"), gpt2_tokenizer, SplitPlan())
    assert other.cache_files != first.cache_files  # the split is part of the key


def test_long_texts_are_cut_exactly_and_encoded_in_pieces(shared_data, gpt2_tokenizer):
    text = (shared_data / "the-verdict.txt").read_text(encoding="utf-8") * 3
    pieces = split_at_safe_spaces(text, piece_chars=500)
    assert "".join(pieces) == text and len(pieces) > 100
    assert encode(gpt2_tokenizer, text) == gpt2_tokenizer(text)["input_ids"]


def test_too_short_corpus_says_how_many_tokens(tmp_path, gpt2_tokenizer):
    (tmp_path / "short.txt").write_text("Hello, I am here.")
    with pytest.raises(ValueError, match=r"the train split is too short: it has \d+ tokens, .* needs at least 257"):
        prepare_lm_datasets(tmp_path / "short.txt", gpt2_tokenizer, max_length=256)
    stream = prepare_lm_datasets(tmp_path / "short.txt", gpt2_tokenizer, max_length=256, streaming=True)
    with pytest.raises(ValueError, match="too short: it has"):
        list(stream.train)


def test_bad_arguments(shared_data, gpt2_tokenizer):
    path = shared_data / "the-verdict.txt"
    with pytest.raises(ValueError, match="max_length must be a positive integer"):
        prepare_lm_datasets(path, gpt2_tokenizer, max_length=0)
    with pytest.raises(ValueError, match="split_by must be one of"):
        prepare_lm_datasets(path, gpt2_tokenizer, split_by="lines")
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        prepare_lm_datasets(path, gpt2_tokenizer, val_fraction=1.0)


def test_window_function_matches_range_formula():
    ids = np.arange(50)
    for max_length, stride in [(4, 1), (10, 10), (7, 3), (3, 60)]:
        windows = gather_windows(ids, max_length, stride)
        assert [w[0] for w in windows] == list(range(0, 50 - max_length, stride))
        assert [
            list(w) for w in iter_windows([list(range(50))[i : i + 6] for i in range(0, 50, 6)], max_length, stride)
        ] == windows.tolist()


def _pieces(text, size):
    return [text[i : i + size] for i in range(0, len(text), size)]


@pytest.mark.parametrize(
    "plan",
    [SplitPlan(), SplitPlan.by_characters(np.array([5, 40, 7]), 0.5), SplitPlan.by_documents(0.4, seed=3)],
    ids=["none", "characters", "documents"],
)
def test_split_plan_routes_pieces_as_the_whole_document(plan):
    rng = random.Random(0)
    docs = ["".join(rng.choice("ab c\n") for _ in range(n)) for n in (5, 40, 7)]
    for index, text in enumerate(docs):
        train, val = plan.text_of(index, text, "train"), plan.text_of(index, text, "validation")
        assert train + val == text  # every character goes to exactly one split, in order
        for split, whole in (("train", train), ("validation", val)):
            assert plan.holds(index, split) == bool(whole)
            for size in (1, 3, 8, 100):
                assert "".join(plan.route(index, _pieces(text, size), split)) == whole, (index, split, size)


def test_character_plan_cuts_one_document_and_stops_reading_at_the_cut():
    plan = SplitPlan.by_characters(np.array([5, 40, 7]), 0.5)  # 52 characters: the first 26 train
    assert (plan.cut_doc, plan.cut_char) == (1, 21)
    assert [plan.holds(i, "train") for i in range(3)] == [True, True, False]
    assert [plan.holds(i, "validation") for i in range(3)] == [False, True, True]
    assert [plan.done(i, "train") for i in range(3)] == [False, False, True]
    pieces = iter(_pieces("x" * 40, 4))
    assert "".join(plan.route(1, pieces, "train")) == "x" * 21
    assert len(list(pieces)) == 4  # pieces 6..9 of document 1 are never read for train
    at_start = SplitPlan.by_characters(np.array([10, 10]), 0.5)  # the cut falls between documents
    assert (at_start.cut_doc, at_start.cut_char) == (1, 0) and at_start.done(1, "train")
    assert not at_start.holds(1, "train") and at_start.text_of(1, "y" * 10, "validation") == "y" * 10


@pytest.mark.parametrize(
    "plan",
    [
        SplitPlan(),
        SplitPlan.by_characters(np.arange(1, 41), 0.7),
        SplitPlan.by_documents(0.05, seed=11),
        SplitPlan.by_documents(0.9, seed=2),
    ],
    ids=["none", "characters", "documents-5%", "documents-90%"],
)
def test_split_plan_separates_all_but_each_splits_first_document(plan):
    for split in ("train", "validation"):
        members = [i for i in range(40) if plan.holds(i, split)]
        assert members or (plan.mode == "none" and split == "validation"), split
        assert [plan.separated(i, split) for i in members] == [k > 0 for k in range(len(members))], split


def test_options_resolve_the_stride_and_check_arguments():
    assert LMOptions(max_length=8).stride == 8 and LMOptions(max_length=8, stride=3).stride == 3
    assert LMOptions(max_length=8, stride=3, pack=True).stride == 8  # packed rows do not overlap
    assert LMOptions(val_fraction=0).split_names == ("train",)
    assert LMOptions().split_names == ("train", "validation")
    with pytest.raises(dataclasses.FrozenInstanceError):
        LMOptions().stride = 1
    with pytest.raises(ValueError, match="stride must be a positive integer"):
        LMOptions(stride=0)
    with pytest.raises(ValueError, match="split_by must be one of"):
        LMOptions(split_by="lines")


LM_MODULES = ("windows", "splits", "lm_options", "tokenize", "sources", "in_memory", "streaming", "lm")


def test_lm_modules_import_at_the_top_without_a_cycle():
    folder = Path(hf_scratchgpt.data.__file__).parent
    graph = {}
    for name in LM_MODULES:
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        nested = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and n not in tree.body]
        assert not nested, f"{name}.py imports inside a function (line {nested[0].lineno})"
        siblings = {n.module for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1}
        assert all(isinstance(n, ast.ImportFrom) and n.module for n in tree.body if getattr(n, "level", 0) == 1)
        graph[name] = siblings
    assert set().union(*graph.values()) <= set(LM_MODULES)  # the language-modelling modules import no others
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    assert order.index("streaming") < order.index("lm") and order.index("in_memory") < order.index("lm")
    assert "lm" not in graph["streaming"] | graph["in_memory"]
