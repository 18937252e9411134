"""Training configurations: types, recipes, overrides, and every recipe checked against its verb's schema."""

import re
from pathlib import Path

import pytest
import yaml

from hf_scratchgpt.cli import find_verb
from hf_scratchgpt.options import config_class, config_options, from_mapping, load_recipe, parse_args, resolve_config
from hf_scratchgpt.training.pretrain import PretrainConfig

from ..conftest import REPO

RECIPES = sorted((REPO / "recipes" / "pretrain").glob("*.yaml"))
ACCELERATE = sorted((REPO / "recipes" / "accelerate").glob("*.yaml"))


def test_defaults_are_valid_and_name_the_output():
    cfg = resolve_config(PretrainConfig, [])
    assert cfg.data == ["builtin", "train:builtin-docstrings"] and cfg.preset == "tiny"
    assert cfg.split_sources == ["builtin"] and cfg.train_only_sources == ["builtin-docstrings"]
    assert cfg.out_dir == Path("runs/tiny-builtin")


def test_overrides_are_typed():
    cfg = resolve_config(
        PretrainConfig,
        [
            "--lr",
            "3e-4",
            "--max-steps",
            "7",
            "--data",
            "a.txt",
            "b.txt",
            "--clip-grad",
            "null",
            "--tie-word-embeddings",
            "--no-overwrite",
            "--mixed-precision",
            "bf16",
        ],
    )
    assert cfg.lr == 3e-4 and cfg.max_steps == 7 and cfg.data == ["a.txt", "b.txt"] and cfg.clip_grad is None
    assert cfg.tie_word_embeddings is True and cfg.overwrite is False and cfg.mixed_precision == "bf16"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--learning-rate", "1"], r"unknown option --learning-rate; valid options: .*--lr"),
        (["--lr", "abc"], r"lr: expected float, got 'abc'"),
        (["--max-steps", "2.5"], r"--max-steps: expected int"),
        (["--batch-size", "0"], r"batch_size must be > 0"),
        (["--mixed-precision", "fp8"], r"mixed_precision must be one of"),
        (["--seed"], r"--seed needs a value"),
        (["--lr", "1", "2"], r"--lr takes one value"),
        (["stray"], r"unexpected argument 'stray'"),
        (["--book-mode", "--group-by-length"], r"book_mode draws the book's shuffled batches; group_by_length"),
    ],
)
def test_bad_options_are_named(argv, message):
    with pytest.raises(ValueError, match=message):
        resolve_config(PretrainConfig, argv)


def test_recipe_then_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lr: 0.01\nbatch_size: 4\n")
    config, overrides = parse_args(
        "pretrain", "", config_options(PretrainConfig), ["--config", str(recipe), "--batch-size", "8"], recipe=True
    )
    assert config == str(recipe) and overrides == {"batch_size": 8}
    cfg = resolve_config(PretrainConfig, ["--config", str(recipe), "--batch-size", "8"])
    assert cfg.lr == 0.01 and cfg.batch_size == 8
    recipe.write_text("lr: 0.01\nlearning_rate: 3\n")
    with pytest.raises(ValueError, match=r"r.yaml: unknown key\(s\) \['learning_rate'\]"):
        resolve_config(PretrainConfig, ["--config", str(recipe)])
    recipe.write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="must be a mapping"):
        resolve_config(PretrainConfig, ["--config", str(recipe)])
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        resolve_config(PretrainConfig, ["--config", str(tmp_path / "none.yaml")])


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_pretrain_recipe_loads_and_documents_itself(path):
    lines = path.read_text().splitlines()
    header = " ".join(lines[:3])
    assert lines[0].startswith("# Run:") and ("scratchgpt pretrain" in header or "hf_scratchgpt pretrain" in header)
    assert str(path.relative_to(REPO)) in header  # the command runs this very file
    assert any(line.startswith("# Expected:") for line in lines[:4])
    resolve_config(PretrainConfig, ["--config", str(path)])


def test_book_recipe_is_the_books_run():
    cfg = resolve_config(PretrainConfig, ["--config", str(REPO / "recipes" / "pretrain" / "verdict-book.yaml")])
    assert (cfg.preset, cfg.context_length, cfg.batch_size, cfg.stride, cfg.epochs, cfg.max_steps) == (
        "gpt2-small",
        256,
        2,
        256,
        10,
        None,
    )
    assert (cfg.lr, cfg.weight_decay, cfg.seed, cfg.init_scheme, cfg.lr_schedule) == (
        4e-4,
        0.1,
        123,
        "book",
        "constant",
    )


def test_default_recipe_equals_the_defaults():
    recipe = resolve_config(PretrainConfig, ["--config", str(REPO / "recipes" / "pretrain" / "tiny-builtin.yaml")])
    assert recipe == resolve_config(PretrainConfig, [])


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_recipes(path):
    text = path.read_text()
    assert text.startswith(f"# accelerate launch --config_file recipes/accelerate/{path.name}")
    data = yaml.safe_load(text)
    assert data["distributed_type"] in ("NO", "MULTI_GPU", "FSDP") and data["num_processes"] >= 1
    if "cpu" in path.name:
        assert data["use_cpu"] is True
    assert load_recipe(path)  # a mapping


def test_the_five_accelerate_setups_exist():
    assert {p.name for p in ACCELERATE} == {
        "cpu-1proc.yaml",
        "cpu-2proc.yaml",
        "gpu-1.yaml",
        "multi-gpu-ddp.yaml",
        "fsdp.yaml",
    }


FINETUNE_RECIPES = sorted((REPO / "recipes" / "finetune").glob("*.yaml"))


@pytest.mark.parametrize("path", FINETUNE_RECIPES, ids=lambda p: p.name)
def test_every_finetune_recipe_names_its_verb_and_loads_with_that_verbs_config(path):
    lines = path.read_text().splitlines()
    match = re.match(r"# Run: +scratchgpt ([\w-]+) --config (\S+)", lines[0])
    assert match and match.group(2) == str(path.relative_to(REPO))  # the command runs this very file
    assert any(line.startswith("# Expected:") for line in lines[:4])
    cls = config_class(find_verb(match.group(1)))
    cfg = from_mapping(cls, load_recipe(path), str(path))
    cfg.validate()
    assert cfg.seed == 123  # the book's seed: its balanced rows and split


def test_the_dpo_book_recipe_is_the_books_notebook_and_the_verbs_defaults():
    from hf_scratchgpt.training.preference import PreferenceConfig

    recipe = resolve_config(PreferenceConfig, ["--config", str(REPO / "recipes" / "finetune" / "dpo-book.yaml")])
    book = (0.1, 5e-6, 0.01, 0.9, 0.999, 1, 8, "constant", 0, None, "all", 0.0, 0.05, 0.10, None)
    keys = (
        "beta", "lr", "weight_decay", "adam_beta1", "adam_beta2", "epochs", "batch_size", "lr_schedule",
        "warmup_steps", "clip_grad", "train_mode", "drop_rate", "val_fraction", "test_fraction", "split_seed",
    )  # fmt: skip
    assert tuple(getattr(recipe, k) for k in keys) == book
    assert tuple(getattr(PreferenceConfig(), k) for k in keys) == book
    assert recipe.data.endswith("instruction-data-with-preference.json") and recipe.prompt_style == "chat"
