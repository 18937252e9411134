"""A procedurally generated instruction suite whose answers can be checked exactly.

Ten task families, each a small generator that draws the arguments of one problem at random and
returns them with several wordings of the instruction, the input and the one correct output. The
tasks suit a small GPT fine-tuned on a CPU: copying, reordering and local transformations of short
inputs drawn from small closed vocabularies, short outputs, no long arithmetic.

Every example has a canonical key: the family and its arguments, as
``family:{"arg": value, ...}`` (JSON, sorted keys). The output and the input are functions of the
key alone, and so is the wording of the instruction (a hash of the key picks it), so the key is the
identity of the whole record. Keys are unique across the suite: no problem is asked twice, not even
in another wording.

Held-out rule (`HELD_OUT_RULE`): which split a key may appear in is a fixed function of the key,
the same for every seed and every size:

1. Combinations held out: in three families one combination of arguments never reaches training
   (`HELD_OUT_COMBINATIONS`): reverse_words lists of 5 words asked with the wording "Reverse the
   order of the words in the list."; count_words lists of 7 words asked with "Count the words in the
   list."; pick_item questions for the third item of a 6-item list. Such a key goes to validation
   when ``h % 3 == 0`` and to test otherwise, where ``h`` is the split hash below.
2. Every other key goes by its split hash ``h = int(sha256("split|" + key)[:16 hex]) % 20``:
   ``h`` 0 or 1 -> test (10 % of the key space), 2 -> validation (5 %), 3-19 -> train (85 %).

A split draws only keys of its own part of the key space, so no test or validation key (and hence
no test instruction with its input) is ever a training key, whatever the seed or sizes: suites built
with different seeds never leak into each other either.

Drawing: each family draws with its own random generator (seeded from the suite's seed and the
family's name, so a family's examples do not depend on which other families are built) until every
split has its share of that family; a drawn key already taken, or of a split already full, is drawn
again. A family whose part of the key space is exhausted (e.g. repeat_word over a smaller word list)
raises a ValueError naming it.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from datasets import Dataset, DatasetDict, Features, Value

SUITE_SPLITS = ("train", "validation", "test")
COLUMNS = ("instruction", "input", "output", "family", "key")
MAX_MISSES = 20_000  # draws in a row without a usable key before a family counts as exhausted

# Closed vocabularies: short common nouns, none a word of an instruction; with a byte-level BPE of 4,096 tokens
# trained on Python's documentation each is one or two tokens.
WORDS = (
    "air", "apple", "arm", "ball", "band", "bed", "bell", "bird", "bone", "book",
    "bread", "car", "card", "cat", "chain", "child", "clock", "coat", "coin", "cow",
    "cup", "dance", "doctor", "dog", "door", "ear", "face", "field", "flag", "floor",
    "flower", "fork", "game", "gate", "gift", "glass", "grass", "hair", "hand", "hat",
    "head", "hill", "home", "ice", "iron", "jar", "king", "kite", "lake", "lamp",
    "leaf", "letter", "light", "lion", "lock", "map", "meal", "metal", "moon", "mouse",
    "nest", "night", "nose", "oil", "onion", "orange", "oven", "owl", "page", "paint",
    "paper", "park", "path", "pen", "pool", "rain", "ring", "sand", "sea", "seed",
    "ship", "soap", "sock", "song", "soup", "square", "star", "stone", "sun", "table",
    "tent", "tiger", "toy", "tree", "wall", "watch", "water", "wave", "wind", "wood",
)  # fmt: skip
FIELD_KEYS = ("age", "city", "color", "food", "id", "name", "pet", "size", "sport", "tool")
FIRST_NAMES = (
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Hugo", "Ida", "Jonas",
    "Karl", "Lena", "Mia", "Nils", "Olga", "Paul", "Rosa", "Sam", "Tom", "Vera",
)  # fmt: skip
DOMAINS = ("data.org", "example.com", "example.org", "python.org", "test.com")
ITEMS = ("books", "boxes", "chairs", "cups", "lamps", "pens", "plates", "tickets")
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh")
COUNT_WORDS = {2: "two", 3: "three", 4: "four"}
SEPARATORS = {"spaces": " ", "commas": ", ", "hyphens": "-"}


@dataclass(frozen=True)
class Task:
    """One drawn problem of a family.

    Attributes:
        args: The problem's arguments (JSON values); with the family name they make the canonical key.
        phrasings: Wordings of the instruction, all asking the same; one is picked by a hash of the key.
        input: The input text ("" when the instruction says everything).
        output: The one correct response.
    """

    args: dict[str, Any]
    phrasings: tuple[str, ...]
    input: str
    output: str


def _items(words: Sequence[Any]) -> str:
    return ", ".join(str(w) for w in words)


# ----------------------------------------------------------------------------- the families


def reverse_words(rng: random.Random) -> Task:
    """Reverse a comma-separated list of 3-7 distinct words."""
    words = rng.sample(WORDS, rng.randint(3, 7))
    phrasings = (
        "Reverse the order of the words in the list.",
        "Write the list backwards, starting with the last word.",
        "List these words in reverse order.",
        "Put the words in the opposite order.",
    )
    return Task({"words": words}, phrasings, _items(words), _items(reversed(words)))


def sort_numbers(rng: random.Random) -> Task:
    """Sort 3-6 distinct numbers below 100, ascending or descending."""
    numbers = rng.sample(range(100), rng.randint(3, 6))
    order = rng.choice(("ascending", "descending"))
    if order == "ascending":
        phrasings = (
            "Sort the numbers in ascending order.",
            "Arrange these numbers from smallest to largest.",
            "Order the numbers from lowest to highest.",
        )
    else:
        phrasings = (
            "Sort the numbers in descending order.",
            "Arrange these numbers from largest to smallest.",
            "Order the numbers from highest to lowest.",
        )
    answer = sorted(numbers, reverse=order == "descending")
    return Task({"numbers": numbers, "order": order}, phrasings, _items(numbers), _items(answer))


def min_max(rng: random.Random) -> Task:
    """The largest or the smallest of 3-7 distinct numbers below 100."""
    numbers = rng.sample(range(100), rng.randint(3, 7))
    which = rng.choice(("largest", "smallest"))
    if which == "largest":
        phrasings = (
            "What is the largest number in the list?",
            "Give the biggest of these numbers.",
            "Which number in the list is the greatest?",
        )
    else:
        phrasings = (
            "What is the smallest number in the list?",
            "Give the lowest of these numbers.",
            "Which number in the list is the least?",
        )
    answer = max(numbers) if which == "largest" else min(numbers)
    return Task({"numbers": numbers, "which": which}, phrasings, _items(numbers), str(answer))


def count_words(rng: random.Random) -> Task:
    """Count a comma-separated list of 1-9 distinct words."""
    words = rng.sample(WORDS, rng.randint(1, 9))
    phrasings = (
        "How many words are in the list?",
        "Count the words in the list.",
        "Give the number of items in this list.",
        "How many items does the list contain?",
    )
    return Task({"words": words}, phrasings, _items(words), str(len(words)))


def uppercase(rng: random.Random) -> Task:
    """Write a phrase of 2-4 words in capital letters."""
    words = rng.sample(WORDS, rng.randint(2, 4))
    phrase = " ".join(words)
    phrasings = (
        "Convert the text to uppercase.",
        "Rewrite the phrase in capital letters.",
        "Write the following in all caps.",
        "Change every letter to uppercase.",
    )
    return Task({"words": words}, phrasings, phrase, phrase.upper())


_SENTENCES = (
    "On {date}, {name} ordered {quantity} {item} (email: {email}).",
    "{name} ({email}) bought {quantity} {item} on {date}.",
    "Send {quantity} {item} to {name} at {email} by {date}.",
    "{email} wrote on {date}: {name} needs {quantity} {item}.",
    "{name} asked for {quantity} {item} on {date} from {email}.",
)


def extract_field(rng: random.Random) -> Task:
    """Copy the email address, the date or the quantity out of a sentence that holds all three."""
    first = rng.choice(FIRST_NAMES)
    args = {
        "field": rng.choice(("email", "date", "quantity")),
        "template": rng.randrange(len(_SENTENCES)),
        "name": first,
        "domain": rng.choice(DOMAINS),
        "quantity": rng.randint(2, 99),
        "item": rng.choice(ITEMS),
        "date": f"{rng.randint(2015, 2029)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
    }
    values = {
        "name": first,
        "email": f"{first.lower()}@{args['domain']}",
        "quantity": str(args["quantity"]),
        "item": args["item"],
        "date": args["date"],
    }
    sentence = _SENTENCES[args["template"]].format(**values)
    phrasings = {
        "email": (
            "Extract the email address from the sentence.",
            "What is the email address in this text?",
            "Copy the email address that appears in the sentence.",
        ),
        "date": (
            "Extract the date from the sentence.",
            "What date is mentioned in this text?",
            "Copy the date that appears in the sentence.",
        ),
        "quantity": (
            "Extract the quantity from the sentence.",
            f"How many {args['item']} does the sentence mention?",
            "Copy the number of items that appears in the sentence.",
        ),
    }[args["field"]]
    return Task(args, phrasings, sentence, values[args["field"]])


def kv_format(rng: random.Random) -> Task:
    """Rewrite 2-3 `key: value` pairs as a JSON object with sorted keys, or as `key=value` lines."""
    keys = rng.sample(FIELD_KEYS, rng.randint(2, 3))
    pairs = [[k, rng.choice(WORDS)] for k in keys]
    target = rng.choice(("json", "lines"))
    text = "; ".join(f"{k}: {v}" for k, v in pairs)
    if target == "json":
        phrasings = (
            "Convert the pairs to a JSON object with sorted keys.",
            "Write these pairs as a JSON object, keys sorted.",
            "Turn the text into JSON with its keys sorted.",
        )
        output = json.dumps(dict(sorted(pairs)))
    else:
        phrasings = (
            "Rewrite each pair as key=value on its own line.",
            "Convert the pairs to key=value lines.",
            "Write one key=value line per pair.",
        )
        output = "\n".join(f"{k}={v}" for k, v in pairs)
    return Task({"pairs": pairs, "target": target}, phrasings, text, output)


def pick_item(rng: random.Random) -> Task:
    """The first, the last or the n-th item of a list of 3-7 distinct words."""
    words = rng.sample(WORDS, rng.randint(3, 7))
    kind = rng.choice(("first", "last", "nth"))
    position = {"first": 1, "last": -1, "nth": rng.randint(2, len(words) - 1)}[kind]
    if position == -1:
        phrasings = (
            "What is the last item in the list?",
            "Give the last word of the list.",
            "Name the final item of the list.",
        )
    else:
        ordinal = ORDINALS[position - 1]
        phrasings = (
            f"What is the {ordinal} item in the list?",
            f"Give the {ordinal} word of the list.",
            f"Name item number {position} of the list.",
        )
    answer = words[position - 1] if position > 0 else words[-1]
    return Task({"words": words, "position": position}, phrasings, _items(words), answer)


def repeat_word(rng: random.Random) -> Task:
    """Repeat a word (or two) 2-4 times with spaces, commas or hyphens between the copies (the input is empty)."""
    word, times = " ".join(rng.sample(WORDS, rng.randint(1, 2))), rng.randint(2, 4)
    separator = rng.choice(tuple(SEPARATORS))
    count = COUNT_WORDS[times]
    phrasings = (
        f"Repeat the word '{word}' {count} times, separated by {separator}.",
        f"Write '{word}' {count} times with {separator} between the copies.",
        f"Say the word {word} {count} times, using {separator} as separators.",
    )
    args = {"word": word, "times": times, "separator": separator}
    return Task(args, phrasings, "", SEPARATORS[separator].join([word] * times))


def dedupe_words(rng: random.Random) -> Task:
    """Remove repeated words from a list of 3-8 words (at least one repeat), keeping first occurrences."""
    distinct = rng.sample(WORDS, rng.randint(2, 5))
    words = distinct + [rng.choice(distinct) for _ in range(rng.randint(1, 8 - len(distinct)))]
    rng.shuffle(words)
    phrasings = (
        "Remove the duplicates from the list, keeping the first occurrence of each word.",
        "List each word once, in the order it first appears.",
        "Delete repeated words from the list and keep the original order.",
    )
    return Task({"words": words}, phrasings, _items(words), _items(dict.fromkeys(words)))


FAMILIES: dict[str, Callable[[random.Random], Task]] = {
    "reverse_words": reverse_words,
    "sort_numbers": sort_numbers,
    "min_max": min_max,
    "count_words": count_words,
    "uppercase": uppercase,
    "extract_field": extract_field,
    "kv_format": kv_format,
    "pick_item": pick_item,
    "repeat_word": repeat_word,
    "dedupe_words": dedupe_words,
}

# family -> (description, predicate of (args, phrasing index)): keys that never reach training
HELD_OUT_COMBINATIONS: dict[str, tuple[str, Callable[[dict[str, Any], int], bool]]] = {
    "reverse_words": (
        "lists of 5 words asked with the wording 'Reverse the order of the words in the list.'",
        lambda args, phrasing: len(args["words"]) == 5 and phrasing == 0,
    ),
    "count_words": (
        "lists of 7 words asked with the wording 'Count the words in the list.'",
        lambda args, phrasing: len(args["words"]) == 7 and phrasing == 1,
    ),
    "pick_item": (
        "the third item of a 6-item list",
        lambda args, phrasing: len(args["words"]) == 6 and args["position"] == 3,
    ),
}

HELD_OUT_RULE = (
    "Every record has a canonical key, family:JSON(arguments, sorted keys); keys are unique in the suite and the "
    "wording is picked by a hash of the key, so a key is never asked twice in other words. Where a key may appear "
    "is fixed by the key alone (the same for every seed and size), with h = int(sha256('split|' + key) first 16 hex "
    "digits) % 20: (1) keys of a held-out combination (see held_out_combination per family) never reach training: "
    "validation if h % 3 == 0, else test; (2) every other key: h in {0, 1} -> test, h == 2 -> validation, "
    "h >= 3 -> train. Each split draws only keys of its own part, so no test or validation key (nor its instruction "
    "with its input) occurs in training."
)


# ----------------------------------------------------------------------------- keys and splits


def task_key(family: str, args: Mapping[str, Any]) -> str:
    """The canonical key of a problem: `family:` + its arguments as compact JSON with sorted keys."""
    return f"{family}:{json.dumps(args, sort_keys=True, separators=(',', ':'))}"


def _hash(salt: str, key: str) -> int:
    return int(hashlib.sha256(f"{salt}|{key}".encode()).hexdigest()[:16], 16)


def phrasing_index(key: str, n_phrasings: int) -> int:
    """Which of a task's `n_phrasings` wordings its record uses: a hash of the key."""
    return _hash("phrasing", key) % n_phrasings


def key_split(family: str, task: Task) -> str:
    """The split a family's task may appear in, by `HELD_OUT_RULE` (a function of the key alone)."""
    key = task_key(family, task.args)
    h = _hash("split", key) % 20
    combination = HELD_OUT_COMBINATIONS.get(family)
    if combination is not None and combination[1](task.args, phrasing_index(key, len(task.phrasings))):
        return "validation" if h % 3 == 0 else "test"
    return "test" if h < 2 else "validation" if h == 2 else "train"


def make_record(family: str, task: Task) -> dict[str, str]:
    """The suite's record of a task: instruction (the key's wording), input, output, family and key."""
    key = task_key(family, task.args)
    instruction = task.phrasings[phrasing_index(key, len(task.phrasings))]
    return {"instruction": instruction, "input": task.input, "output": task.output, "family": family, "key": key}


def check_answer(record: Mapping[str, Any], response: str) -> bool:
    """Whether `response` answers `record` exactly: equal to its output once both are stripped (case counts).

    The same rule as the package's `exact_match` metric with its defaults.
    """
    return response.strip() == str(record["output"]).strip()


# ----------------------------------------------------------------------------- near misses (preference pairs)


def _swap_adjacent(items: list[Any], rng: random.Random) -> list[Any]:
    i = rng.randrange(len(items) - 1)
    return items[:i] + [items[i + 1], items[i]] + items[i + 2 :]


def near_miss(record: Mapping[str, Any]) -> str:
    """A wrong answer close to the right one, for preference pairs (chosen: the output; rejected: this).

    The mistake is one a model that half-learned the family makes: two neighbouring items swapped
    (reverse_words, sort_numbers, dedupe_words), the other extreme (min_max), a count off by one, one
    word left in lower case, another field of the sentence (extract_field), keys left unsorted or the
    input's separator kept (kv_format), the neighbouring item (pick_item), one copy too few or too
    many (repeat_word). It is a function of the record's key (the same for every seed) and never
    equals the output.
    """
    family, _, raw = str(record["key"]).partition(":")
    args = json.loads(raw)
    rng = random.Random(_hash("near-miss", record["key"]))
    output = str(record["output"])
    if family in ("reverse_words", "sort_numbers", "dedupe_words"):
        items = output.split(", ")
        wrong = _items(_swap_adjacent(items, rng)) if len(items) > 1 else output + ", " + output
    elif family == "min_max":
        numbers = args["numbers"]
        wrong = str(min(numbers) if args["which"] == "largest" else max(numbers))
    elif family == "count_words":
        n = len(args["words"])
        wrong = str(n + 1 if n == 1 or rng.random() < 0.5 else n - 1)
    elif family == "uppercase":
        words = output.split(" ")
        i = rng.randrange(len(words))
        wrong = " ".join(w.lower() if j == i else w for j, w in enumerate(words))
    elif family == "extract_field":
        values = {
            "email": f"{args['name'].lower()}@{args['domain']}",
            "date": args["date"],
            "quantity": str(args["quantity"]),
        }
        wrong = values[rng.choice([f for f in values if f != args["field"]])]
    elif family == "kv_format":
        pairs = args["pairs"]
        if args["target"] == "json":
            unsorted = json.dumps(dict(pairs))
            wrong = unsorted if unsorted != output else json.dumps(dict(sorted(pairs)), separators=(",", ":"))
        else:
            wrong = "\n".join(f"{k}: {v}" for k, v in pairs)
    elif family == "pick_item":
        words, position = args["words"], args["position"]
        index = len(words) - 1 if position == -1 else position - 1
        wrong = words[index - 1] if index == len(words) - 1 or (index > 0 and rng.random() < 0.5) else words[index + 1]
    elif family == "repeat_word":
        times = args["times"] + (1 if args["times"] == 2 or rng.random() < 0.5 else -1)
        wrong = SEPARATORS[args["separator"]].join([args["word"]] * times)
    else:
        raise ValueError(f"no near miss for family {family!r}")
    if wrong == output:  # cannot happen for distinct items; a guard for future families
        raise ValueError(f"the near miss of {record['key']} equals its output")
    return wrong


# ----------------------------------------------------------------------------- the suite


def _quotas(n: int, families: Sequence[str]) -> dict[str, int]:
    base, extra = divmod(n, len(families))
    return {name: base + (i < extra) for i, name in enumerate(families)}


def _draw_family(name: str, need: dict[str, int], seed: int) -> dict[str, list[dict[str, str]]]:
    generate = FAMILIES[name]
    rng = random.Random(f"{seed}:{name}")
    rows: dict[str, list[dict[str, str]]] = {split: [] for split in need}
    seen: set[str] = set()
    misses = 0
    while any(len(rows[s]) < need[s] for s in need):
        task = generate(rng)
        key = task_key(name, task.args)
        split = key_split(name, task)
        if key in seen or len(rows[split]) >= need[split]:
            misses += 1
            if misses >= MAX_MISSES:
                short = [s for s in need if len(rows[s]) < need[s]]
                found = ", ".join(f"{len(rows[s])} of {need[s]} {s}" for s in short)
                raise ValueError(
                    f"family {name!r} cannot supply the examples asked for: {found} found before {MAX_MISSES:,} "
                    f"draws in a row gave no new key (its key space is too small); ask for fewer examples or "
                    f"leave the family out"
                )
            continue
        misses = 0
        seen.add(key)
        rows[split].append(make_record(name, task))
    return rows


def build_instruction_suite(
    n_train: int = 4000,
    n_validation: int = 200,
    n_test: int = 400,
    seed: int = 123,
    families: Sequence[str] | None = None,
) -> DatasetDict:
    """Draw the suite: train, validation and test splits balanced across families, keys held out by `HELD_OUT_RULE`.

    Each split holds `n // len(families)` examples of every family (the first `n % len(families)`
    families in the given order one more), in an order shuffled with `seed`. The same seed gives the
    same rows; the held-out partition of the key space does not depend on the seed.

    Args:
        n_train: Training examples.
        n_validation: Validation examples.
        n_test: Test examples.
        seed: Seed of the draws and of the row order.
        families: Names of `FAMILIES` to include (default: all, in `FAMILIES` order).

    Returns:
        A `DatasetDict` (train, validation, test) of string columns instruction, input, output, family and key.

    Raises:
        ValueError: A negative size, no family, an unknown or repeated family name, or a family whose key
            space cannot supply its share of a split (the family is named).
    """
    sizes = {"train": n_train, "validation": n_validation, "test": n_test}
    for split, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"the number of {split} examples must be an integer >= 0, got {n!r}")
    names = list(FAMILIES) if families is None else list(families)
    if not names:
        raise ValueError(f"no families given; choose from {', '.join(FAMILIES)}")
    for name in names:
        if name not in FAMILIES:
            raise ValueError(f"unknown instruction family {name!r}; choose from {', '.join(FAMILIES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"family {repeated[0]!r} is given more than once")
    quotas = {split: _quotas(n, names) for split, n in sizes.items()}
    drawn = {name: _draw_family(name, {s: quotas[s][name] for s in SUITE_SPLITS}, seed) for name in names}
    features = Features({column: Value("string") for column in COLUMNS})
    parts = {}
    for split in SUITE_SPLITS:
        rows = [row for name in names for row in drawn[name][split]]
        random.Random(f"{seed}:order:{split}").shuffle(rows)
        parts[split] = Dataset.from_dict({c: [row[c] for row in rows] for c in COLUMNS}, features=features)
    return DatasetDict(parts)


def family_counts(suite: DatasetDict) -> dict[str, dict[str, int]]:
    """Examples per family and split: `{family: {split: count}}`, families in `FAMILIES` order."""
    found = {name for split in suite for name in suite[split]["family"]}
    counts = {name: dict.fromkeys(suite, 0) for name in FAMILIES if name in found}
    for split in suite:
        for name in suite[split]["family"]:
            counts[name][split] += 1
    return counts


__all__ = [
    "COLUMNS",
    "FAMILIES",
    "HELD_OUT_COMBINATIONS",
    "HELD_OUT_RULE",
    "SUITE_SPLITS",
    "Task",
    "build_instruction_suite",
    "check_answer",
    "family_counts",
    "key_split",
    "make_record",
    "near_miss",
    "phrasing_index",
    "task_key",
]
