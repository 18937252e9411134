"""The `hub` verbs: `scratchgpt push` and `scratchgpt pull` (the Hub calls are in `hf_scratchgpt.hub`)."""

from __future__ import annotations

from pathlib import Path

from .. import hub


def push(
    run_dir: str,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    base_model: str | None = None,
) -> str:
    """Push a run's final folder (a LoRA run: its adapter) or a model folder to a Hub repo.

    The token comes from HF_TOKEN or `hf auth login` and is never printed. Files the repo already
    has unchanged are not uploaded again: a second push of the same folder makes no commit.

    Args:
        run_dir: A run folder (its final/ is pushed; a LoRA run's final/adapter), a model folder or an adapter folder.
        repo_id: The Hub repo, namespace/name (created if missing).
        private: Create the repo private.
        revision: Branch to push to (created from main if missing; default: main).
        commit_message: The commit's summary (default: "Upload ScratchGPT model with hf_scratchgpt").
        base_model: Hub repo id of the base model, for the card's header and an adapter's
            base_model_name_or_path (needed when the run's base was a local folder).

    Returns:
        The repo's URL.
    """
    pushed = hub.push_folder(
        run_dir, repo_id, private=private, revision=revision, commit_message=commit_message, base_model=base_model
    )
    branch = f" (branch {revision})" if revision else ""
    if pushed.changed:
        print(f"pushed {pushed.folder} -> {pushed.url}{branch}")
    else:
        print(f"{pushed.url}{branch} already holds these files: nothing to push, no commit")
    return pushed.url


def pull(repo_id: str, out: str, *, revision: str | None = None, overwrite: bool = False) -> Path:
    """Download a Hub repo (a model or an adapter) into a local folder and say how to load it.

    Args:
        repo_id: The Hub repo, namespace/name.
        out: The folder to write (it appears only once complete).
        revision: Branch, tag or commit (default: main).
        overwrite: Replace an existing, non-empty OUT.

    Returns:
        The output folder.
    """
    folder = hub.pull(repo_id, out, revision=revision, overwrite=overwrite)
    print(f"pulled {repo_id}" + (f"@{revision}" if revision else "") + f" -> {folder}")
    if (folder / hub.ADAPTER_CONFIG).is_file():
        print(f'load it with peft: PeftModel.from_pretrained(base_model, "{folder}")')
    else:
        print(
            f'load it with: AutoModelForCausalLM.from_pretrained("{folder}", trust_remote_code=True) and '
            f'AutoTokenizer.from_pretrained("{folder}", trust_remote_code=True) (the tokenizer reads the custom '
            "config.json too), or `import hf_scratchgpt` first and leave the flag out"
        )
    return folder
