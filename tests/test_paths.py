"""The one local-path-or-Hub-id rule."""

import pytest

from hf_scratchgpt.paths import is_hub_id, local_or_hub


@pytest.mark.parametrize(
    "spec, hub",
    [
        ("openai-community/gpt2", True),
        ("gpt2", True),
        ("roneneldan/TinyStories", True),
        ("./gpt2", False),
        ("/abs/model", False),
        ("~/model", False),
        ("a/b/c", False),
        ("data/*.txt", False),
        ("corpus.txt", False),
        ("recipe.yaml", False),
        ("..", False),
        ("-bad", False),
    ],
)
def test_hub_ids_and_paths(spec, hub):
    assert is_hub_id(spec) is hub


def test_a_path_under_an_existing_folder_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("runs/typo")
    (tmp_path / "runs").mkdir()
    assert not is_hub_id("runs/typo")  # a typo under runs/ fails fast, naming the path, with no Hub request
    with pytest.raises(FileNotFoundError, match="model not found: runs/typo"):
        local_or_hub("runs/typo", "model")
    (tmp_path / "runs" / "typo").mkdir()
    assert str(local_or_hub("runs/typo", "model")) == "runs/typo"  # an existing local Path
    assert local_or_hub("openai-community/gpt2", "model") == "openai-community/gpt2"


def test_a_run_folder_given_as_a_model_names_its_final_folder(tmp_path):
    from hf_scratchgpt.paths import model_folder_or_hub

    (tmp_path / "run" / "final").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"run is not a model folder \(no config.json in it\)$"):
        model_folder_or_hub(tmp_path / "run")
    (tmp_path / "run" / "final" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no config.json in it\); its final model is .*run/final$"):
        model_folder_or_hub(tmp_path / "run")
    assert model_folder_or_hub(tmp_path / "run" / "final") == tmp_path / "run" / "final"
