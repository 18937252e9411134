"""The generated instruction suite: determinism, sizes, balance, exact answers, held-out keys, the CLI verb."""

import json
import re

import pytest

from hf_scratchgpt.cli import main
from hf_scratchgpt.data import instruction_suite
from hf_scratchgpt.data.instruction import load_instruction_records
from hf_scratchgpt.data.instruction_suite import (
    COLUMNS,
    FAMILIES,
    HELD_OUT_COMBINATIONS,
    build_instruction_suite,
    check_answer,
    family_counts,
    task_key,
)
from hf_scratchgpt.prompts import render

SPLITS = ("train", "validation", "test")


@pytest.fixture(scope="module")
def suite():
    return build_instruction_suite()  # the defaults: 4000 / 200 / 400, seed 123, every family


def rows(ds):
    return [dict(r) for r in ds]


def parse_key(record):
    family, _, args = record["key"].partition(":")
    assert family == record["family"]
    args = json.loads(args)
    assert task_key(family, args) == record["key"]  # the key is canonical
    return args


def items(text):
    return text.split(", ")


# ----------------------------------------------------------------------------- independent answer checks
# Each recomputes the answer from the key's arguments without the generators, and checks the input too.


def check_reverse_words(r, a):
    assert items(r["input"]) == a["words"]
    assert items(r["output"])[::-1] == a["words"] and len(set(a["words"])) == len(a["words"])


def check_sort_numbers(r, a):
    numbers = [int(x) for x in items(r["input"])]
    answer = [int(x) for x in items(r["output"])]
    assert numbers == a["numbers"] and sorted(answer) == sorted(numbers)
    pairs = list(zip(answer, answer[1:]))
    assert all(x < y for x, y in pairs) if a["order"] == "ascending" else all(x > y for x, y in pairs)
    assert (
        "descending" in r["instruction"] or "largest to" in r["instruction"] or "highest to" in r["instruction"]
    ) == (a["order"] == "descending")


def check_min_max(r, a):
    numbers = [int(x) for x in items(r["input"])]
    assert numbers == a["numbers"]
    expected = max(numbers) if a["which"] == "largest" else min(numbers)
    assert r["output"] == str(expected)


def check_count_words(r, a):
    assert items(r["input"]) == a["words"] and r["output"] == str(len(a["words"])) and 1 <= len(a["words"]) <= 9


def check_uppercase(r, a):
    assert r["input"].split(" ") == a["words"]
    assert r["output"] == " ".join(w.upper() for w in a["words"]) and r["output"].isupper()


def check_extract_field(r, a):
    sentence, answer = r["input"], r["output"]
    assert answer in sentence  # a copy of a part of the sentence
    emails = re.findall(r"[a-z]+@[a-z]+\.[a-z]+", sentence)
    dates = re.findall(r"\b\d{4}-\d{2}-\d{2}\b", sentence)
    assert len(emails) == 1 and len(dates) == 1 and dates[0] == a["date"]
    assert emails[0] == f"{a['name'].lower()}@{a['domain']}" and a["name"] in sentence
    assert f"{a['quantity']} {a['item']}" in sentence
    expected = {"email": emails[0], "date": dates[0], "quantity": str(a["quantity"])}[a["field"]]
    assert answer == expected


def check_kv_format(r, a):
    pairs = [part.split(": ") for part in r["input"].split("; ")]
    assert pairs == a["pairs"] and len({k for k, _ in pairs}) == len(pairs)
    if a["target"] == "json":
        parsed = json.loads(r["output"])
        assert parsed == dict(pairs) and list(parsed) == sorted(parsed)
    else:
        assert [line.split("=") for line in r["output"].split("\n")] == pairs


def check_pick_item(r, a):
    words = items(r["input"])
    assert words == a["words"]
    n = a["position"]
    expected = words[-1] if n == -1 else words[n - 1]
    assert r["output"] == expected
    word = {1: "first", 2: "second", 3: "third", 4: "fourth", 5: "fifth", 6: "sixth", 7: "seventh"}
    assert (
        ("last" in r["instruction"] or "final" in r["instruction"])
        if n == -1
        else (word[n] in r["instruction"] or f"number {n} " in r["instruction"])
    )


def check_repeat_word(r, a):
    separator = {"spaces": " ", "commas": ", ", "hyphens": "-"}[a["separator"]]
    assert r["input"] == "" and 2 <= a["times"] <= 4
    assert r["output"] == separator.join([a["word"]] * a["times"]) and 1 <= len(a["word"].split()) <= 2
    assert a["word"] in r["instruction"] and a["separator"] in r["instruction"]
    assert {2: "two", 3: "three", 4: "four"}[a["times"]] in r["instruction"]


def check_dedupe_words(r, a):
    words, answer = items(r["input"]), items(r["output"])
    assert words == a["words"] and len(set(words)) < len(words)  # at least one repeat
    assert len(set(answer)) == len(answer) and set(answer) == set(words)
    assert [words.index(w) for w in answer] == sorted(words.index(w) for w in answer)  # first-occurrence order


CHECKS = {
    "reverse_words": check_reverse_words,
    "sort_numbers": check_sort_numbers,
    "min_max": check_min_max,
    "count_words": check_count_words,
    "uppercase": check_uppercase,
    "extract_field": check_extract_field,
    "kv_format": check_kv_format,
    "pick_item": check_pick_item,
    "repeat_word": check_repeat_word,
    "dedupe_words": check_dedupe_words,
}


def test_every_family_has_an_independent_check():
    assert set(CHECKS) == set(FAMILIES) and len(FAMILIES) == 10


def test_every_answer_is_right(suite):
    for split in SPLITS:
        for r in rows(suite[split]):
            CHECKS[r["family"]](r, parse_key(r))
            assert check_answer(r, r["output"])


def test_records_are_valid_and_short(suite):
    for split in SPLITS:
        assert suite[split].column_names == list(COLUMNS)
        for r in rows(suite[split]):
            assert all(isinstance(r[c], str) for c in COLUMNS)
            assert r["instruction"].strip() and r["output"].strip() and r["output"] == r["output"].strip()
            assert len(r["output"]) <= 80 and len(r["input"]) <= 100


def test_sizes_and_balance(suite):
    assert {s: len(suite[s]) for s in SPLITS} == {"train": 4000, "validation": 200, "test": 400}
    assert family_counts(suite) == {name: {"train": 400, "validation": 20, "test": 40} for name in FAMILIES}
    odd = build_instruction_suite(23, 12, 0, seed=1)
    counts = family_counts(odd)
    assert [counts[n]["train"] for n in FAMILIES] == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]
    assert [counts[n]["validation"] for n in FAMILIES] == [2, 2] + [1] * 8
    assert len(odd["test"]) == 0


def test_same_seed_same_rows_other_seed_other_rows():
    a = build_instruction_suite(200, 20, 40, seed=7)
    b = build_instruction_suite(200, 20, 40, seed=7)
    c = build_instruction_suite(200, 20, 40, seed=8)
    for split in SPLITS:
        assert rows(a[split]) == rows(b[split])
        assert {r["key"] for r in a[split]} != {r["key"] for r in c[split]}
    assert len({r["family"] for r in rows(a["train"])[:20]}) > 3  # the rows are shuffled, not family by family


def test_a_familys_rows_do_not_depend_on_the_other_families(suite):
    alone = build_instruction_suite(400, 20, 40, families=["min_max"])
    for split in SPLITS:
        assert {r["key"] for r in alone[split]} == {r["key"] for r in suite[split] if r["family"] == "min_max"}


def test_keys_unique_and_held_out_splits_disjoint_from_train(suite):
    keys = [r["key"] for s in SPLITS for r in suite[s]]
    assert len(keys) == len(set(keys))
    train_keys = set(suite["train"]["key"])
    train_prompts = {(r["instruction"], r["input"]) for r in suite["train"]}
    for split in ("validation", "test"):
        assert not train_keys & set(suite[split]["key"])
        assert not train_prompts & {(r["instruction"], r["input"]) for r in suite[split]}
    # the partition of the key space does not depend on the seed: no suite's test key is another's train key
    other = build_instruction_suite(2000, 0, 400, seed=99)
    assert not set(other["test"]["key"]) & train_keys
    assert not set(suite["test"]["key"]) & set(other["train"]["key"])


# The held-out combinations as the module documents them, restated from the records' text.
COMBINATIONS = {
    "reverse_words": lambda r: (
        r["instruction"] == "Reverse the order of the words in the list." and len(items(r["input"])) == 5
    ),
    "count_words": lambda r: r["instruction"] == "Count the words in the list." and r["output"] == "7",
    "pick_item": lambda r: len(items(r["input"])) == 6 and parse_key(r)["position"] == 3,
}


def test_held_out_combinations_never_reach_training(suite):
    assert set(COMBINATIONS) == set(HELD_OUT_COMBINATIONS)
    train = [r for r in rows(suite["train"]) if r["family"] in COMBINATIONS]
    assert len(train) == 1200 and not any(COMBINATIONS[r["family"]](r) for r in train)
    evaluated = [r for s in ("validation", "test") for r in rows(suite[s]) if r["family"] in COMBINATIONS]
    assert {r["family"] for r in evaluated if COMBINATIONS[r["family"]](r)} == set(COMBINATIONS)
    # what is held out is the combination only: its parts do occur in training
    assert any(len(items(r["input"])) == 5 for r in train if r["family"] == "reverse_words")
    assert any(r["instruction"] == "Count the words in the list." for r in train)
    assert any(r["output"] == "7" for r in train if r["family"] == "count_words")
    assert any(parse_key(r)["position"] == 3 for r in train if r["family"] == "pick_item")


def test_check_answer_is_strip_then_exact():
    record = {"instruction": "x", "input": "", "output": "cat, dog"}
    assert check_answer(record, "cat, dog")
    assert check_answer(record, "  cat, dog\n")
    assert not check_answer(record, "Cat, dog")
    assert not check_answer(record, "cat,dog")
    assert not check_answer(record, "cat, dog.")


def test_bad_arguments_are_named(monkeypatch):
    with pytest.raises(ValueError, match="unknown instruction family 'sorting'"):
        build_instruction_suite(10, 0, 0, families=["min_max", "sorting"])
    with pytest.raises(ValueError, match="'min_max' is given more than once"):
        build_instruction_suite(10, 0, 0, families=["min_max", "min_max"])
    with pytest.raises(ValueError, match="no families"):
        build_instruction_suite(10, 0, 0, families=[])
    with pytest.raises(ValueError, match="test examples must be an integer >= 0"):
        build_instruction_suite(10, 0, -1)
    # with two words, repeat_word has (2 + 2) phrases x 3 counts x 3 separators = 36 keys: 100 cannot be drawn
    monkeypatch.setattr(instruction_suite, "WORDS", ("owl", "cat"))
    with pytest.raises(ValueError, match="family 'repeat_word' cannot supply .* of 100 train"):
        build_instruction_suite(100, 0, 0, families=["repeat_word"])


# ----------------------------------------------------------------------------- the verb


def test_cli_writes_the_folder(tmp_path, capsys):
    out = tmp_path / "suite"
    args = ["make-instruction-suite", "--out", str(out), "--train", "60", "--validation", "10", "--test", "20"]
    assert main([*args, "--seed", "5"]) == 0
    assert "60 / 10 / 20 examples of 10 families" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "pretrain.txt",
        "suite.json",
        "test.jsonl",
        "train.jsonl",
        "validation.jsonl",
    ]
    train = load_instruction_records(out / "train.jsonl")
    expected = build_instruction_suite(60, 10, 20, seed=5)
    assert rows(train) == rows(expected["train"])
    assert rows(load_instruction_records(out / "test.jsonl")) == rows(expected["test"])
    info = json.loads((out / "suite.json").read_text(encoding="utf-8"))
    assert info["seed"] == 5 and info["sizes"] == {"train": 60, "validation": 10, "test": 20}
    assert info["families"]["min_max"] == {"train": 6, "validation": 1, "test": 2, "held_out_combination": None}
    assert "third item of a 6-item list" in info["families"]["pick_item"]["held_out_combination"]
    assert "sha256" in info["held_out_rule"]
    pretrain = (out / "pretrain.txt").read_text(encoding="utf-8")
    docs = pretrain.split("<|endoftext|>")
    assert docs[-1] == "" and docs[:-1] == [render(r, "alpaca")[1] for r in rows(expected["train"])]
    held_out_prompts = {render(r, "alpaca")[0] for s in ("validation", "test") for r in rows(expected[s])}
    assert not any(doc.startswith(p) for doc in docs for p in held_out_prompts)

    # an existing folder is refused without --overwrite and left as it was
    before = (out / "train.jsonl").read_bytes()
    assert main([*args, "--seed", "6"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "train.jsonl").read_bytes() == before
    more = ["--families", "uppercase", "pick_item", "--prompt-style", "phi3"]
    assert main([*args, "--seed", "6", "--overwrite", *more]) == 0
    info = json.loads((out / "suite.json").read_text(encoding="utf-8"))
    assert info["seed"] == 6 and list(info["families"]) == ["uppercase", "pick_item"]
    assert info["pretrain"]["prompt_style"] == "phi3"
    train = load_instruction_records(out / "train.jsonl")
    assert set(train["family"]) == {"uppercase", "pick_item"}
    docs = (out / "pretrain.txt").read_text(encoding="utf-8").split("<|endoftext|>")[:-1]
    assert docs == [render(r, "phi3")[1] for r in rows(train)]
    assert main([*args, "--overwrite", "--prompt-style", "chat"]) == 2
    assert "--prompt-style must be one of ('alpaca', 'phi3'), got 'chat'" in capsys.readouterr().err


def test_cli_errors_leave_no_folder(tmp_path, capsys, monkeypatch):
    out = tmp_path / "suite"
    assert main(["make-instruction-suite", "--out", str(out), "--families", "min_max", "sorting"]) == 2
    assert "unknown instruction family 'sorting'" in capsys.readouterr().err
    assert main(["make-instruction-suite", "--out", str(out), "--train", "0"]) == 2
    assert not out.exists()

    def fail(*args, **kwargs):
        raise RuntimeError("interrupted while writing")

    monkeypatch.setattr("hf_scratchgpt.commands.suite.render", fail)
    assert main(["make-instruction-suite", "--out", str(out), "--train", "20", "--test", "10"]) == 1
    assert "interrupted while writing" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary leftovers


def test_cli_skips_an_empty_split(tmp_path):
    out = tmp_path / "suite"
    assert main(["make-instruction-suite", "--out", str(out), "--train", "20", "--validation", "0"]) == 0
    assert not (out / "validation.jsonl").exists() and (out / "test.jsonl").is_file()
    assert json.loads((out / "suite.json").read_text(encoding="utf-8"))["sizes"]["validation"] == 0


# ----------------------------------------------------------------------------- preference pairs


def test_every_near_miss_is_wrong_close_and_fixed_by_the_key(suite):
    from hf_scratchgpt.data.instruction_suite import near_miss

    by_family = {}
    for r in rows(suite["train"]) + rows(suite["test"]):
        wrong = near_miss(r)
        assert wrong != r["output"] and not check_answer(r, wrong)
        assert near_miss(dict(r)) == wrong  # a function of the record's key
        by_family.setdefault(r["family"], []).append((r, wrong))
    assert set(by_family) == set(instruction_suite.FAMILIES)
    for r, wrong in by_family["sort_numbers"] + by_family["reverse_words"] + by_family["dedupe_words"]:
        assert sorted(items(wrong)) == sorted(items(r["output"]))  # the same items, two of them swapped
        assert sum(a != b for a, b in zip(items(wrong), items(r["output"]))) == 2
    for r, wrong in by_family["count_words"]:
        assert abs(int(wrong) - int(r["output"])) == 1
    for r, wrong in by_family["min_max"]:
        assert wrong in items(r["input"])
    for r, wrong in by_family["uppercase"]:
        assert wrong.upper() == r["output"]


def test_cli_writes_preference_pairs_that_finetune_dpo_reads(tmp_path):
    from hf_scratchgpt.data.instruction_suite import near_miss
    from hf_scratchgpt.data.preference import load_preference_splits

    out = tmp_path / "prefs"
    args = ["make-instruction-suite", "--out", str(out), "--train", "40", "--validation", "10", "--test", "20"]
    assert main([*args, "--preferences"]) == 0
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert all(r["chosen"] == r["output"] and r["rejected"] == near_miss(r) for r in train)
    info = json.loads((out / "suite.json").read_text(encoding="utf-8"))
    assert info["columns"][-2:] == ["chosen", "rejected"] and "near miss" in info["preferences"]
    splits = load_preference_splits(out)
    assert {k: len(v) for k, v in splits.items()} == {"train": 40, "validation": 10, "test": 20}
    assert splits["test"][0]["chosen"] == json.loads((out / "test.jsonl").read_text().splitlines()[0])["output"]
