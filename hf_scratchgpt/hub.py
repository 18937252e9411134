"""Sharing through the Hugging Face Hub: push a run's final folder (or a LoRA run's adapter), pull a repo.

A pushed repo is a plain Hugging Face folder: safetensors weights, config.json with its `auto_map`,
the remote-code files, the tokenizer with its chat template, generation_config.json, the model card
(its local paths rewritten to the repo id) and the loss plot. A LoRA run pushes its peft adapter,
which must name a base model on the Hub. The token comes from `HF_TOKEN` or `hf auth login`; it is
never printed, and a missing or refused token stops before anything is uploaded.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .folders import atomic_output_dir, check_output_dir

ADAPTER_CONFIG = "adapter_config.json"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")


class HubError(OSError):
    """A Hub operation that could not be done (no token, a refused token, a missing repo), in one line."""


def check_repo_id(repo_id: str, what: str = "repo id") -> str:
    """`repo_id` if it has the Hub's `namespace/name` form.

    Raises:
        ValueError: naming the value and the expected form.
    """
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise ValueError(f"{what} {repo_id!r} is not a Hub repo id; expected namespace/name, e.g. alice/my-gpt")
    return repo_id


def _hub_errors(action: str, repo_id: str, err: Exception) -> HubError:
    """One line for a failed Hub call (the token is never part of it)."""
    where = constants.ENDPOINT
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{action} {repo_id}: the revision does not exist on {where}")
    if isinstance(err, (RepositoryNotFoundError, GatedRepoError)):
        return HubError(
            f"{action} {repo_id}: no such repo on {where}, or it is private and the token (HF_TOKEN or "
            "`hf auth login`) does not give access"
        )
    if isinstance(err, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE:
        return HubError(f"{action} {repo_id}: HF_HUB_OFFLINE=1 is set and the repo is not in the local cache")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return HubError(f"{action} {repo_id}: {where} refused the token (401); set a valid HF_TOKEN")
    if status == 403:
        return HubError(f"{action} {repo_id}: the token may not write to {repo_id} on {where} (403)")
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return HubError(f"{action} {repo_id}: {first}")


def whoami(api: HfApi) -> str:
    """The user the token belongs to.

    Raises:
        HubError: No token, a refused token, or an unreachable Hub.
    """
    if constants.HF_HUB_OFFLINE:
        raise HubError("pushing needs the Hub, but HF_HUB_OFFLINE=1 is set")
    if api.token is None and get_token() is None:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    try:
        return api.whoami()["name"]
    except HfHubHTTPError as err:
        raise _hub_errors("push to", constants.ENDPOINT, err) from None
    except OSError as err:
        raise HubError(f"cannot reach {constants.ENDPOINT}: {err}") from None


def shareable_folder(path: str | Path) -> tuple[Path, bool]:
    """The folder a push of `path` uploads and whether it is a LoRA adapter.

    `path` is a model folder (config.json), an adapter folder (adapter_config.json) or a run folder:
    its `final/`, or for a LoRA run (`final/adapter/` exists) the adapter.

    Raises:
        FileNotFoundError: `path` is none of these.
    """
    path = Path(path)
    if (path / "final").is_dir():
        path = path / "final"
        if (path / "adapter" / ADAPTER_CONFIG).is_file():
            path = path / "adapter"
    if (path / ADAPTER_CONFIG).is_file():
        return path, True
    if (path / "config.json").is_file():
        return path, False
    raise FileNotFoundError(
        f"{path} is not a model folder (config.json), an adapter folder (adapter_config.json) or a run folder "
        "with final/; give the folder a training verb wrote"
    )


def _rewrite_card(text: str, repo_id: str, base_model: str | None, is_adapter: bool) -> str:
    """The card with the local paths of its load examples replaced: the folder's by `repo_id`, an adapter's
    base model's by `base_model`; `base_model` also goes into the YAML header."""
    if is_adapter:
        own = set(re.findall(r'PeftModel\.from_pretrained\(base, "([^"]+)"\)', text))
        bases = set(re.findall(r'(?:AutoModel\w*|AutoTokenizer)\.from_pretrained\("([^"]+)"', text))
    else:
        own = set(re.findall(r'(?:from_pretrained\(|model=)"([^"]+)"', text))
        own |= set(re.findall(r"`?scratchgpt (?:chat|classify|generate) ([^\s`\"]+)", text))
        bases = set()
    replacements = {old: repo_id for old in own} | ({old: base_model for old in bases} if base_model else {})
    for old, new in sorted(replacements.items(), key=lambda item: -len(item[0])):
        if old != new:
            text = text.replace(f'"{old}"', f'"{new}"')
            text = re.sub(rf"(scratchgpt (?:chat|classify|generate) ){re.escape(old)}(?=[\s`])", rf"\g<1>{new}", text)
    if base_model is not None and text.startswith("---\n"):
        header_end = text.index("\n---\n", 3)
        header = re.sub(r"(?m)^base_model:.*\n", "", text[: header_end + 1])
        text = f"{header}base_model: {base_model}{text[header_end:]}"
    return text


def _staged_copy(folder: Path, repo_id: str, base_model: str | None, is_adapter: bool, into: Path) -> Path:
    """A copy of `folder` ready to push: the card rewritten, and an adapter's base model set to `base_model`."""
    stage = into / "repo"
    shutil.copytree(folder, stage, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    if is_adapter:
        config_path = stage / ADAPTER_CONFIG
        config = json.loads(config_path.read_text(encoding="utf-8"))
        base = base_model or config.get("base_model_name_or_path")
        if not base or Path(base).exists() or not REPO_ID.match(base):
            raise ValueError(
                f"the adapter's base model {base!r} is a local folder; push the base first (scratchgpt push BASE "
                "REPO_ID) and give its repo id with --base-model, so the adapter repo names a base others can load"
            )
        config["base_model_name_or_path"] = base
        config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        base_model = base
    card = stage / "README.md"
    if card.is_file():
        text = card.read_text(encoding="utf-8")
        card.write_text(_rewrite_card(text, repo_id, base_model, is_adapter), encoding="utf-8")
    return stage


def push_folder(
    path: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    base_model: str | None = None,
) -> str:
    """Upload a model folder, a run's final folder or a LoRA run's adapter to `repo_id`; returns the repo URL.

    The repo (and the branch `revision`) is created if needed; files the repo already has unchanged
    are not uploaded again, so pushing the same folder twice makes no second commit.

    Raises:
        ValueError: A malformed repo id, or an adapter whose base model is only a local folder.
        FileNotFoundError: `path` is not a model, adapter or run folder.
        HubError: No token, a refused token, or a failed Hub call (one line; the token never appears).
    """
    check_repo_id(repo_id)
    if base_model is not None:
        check_repo_id(base_model, "--base-model")
    folder, is_adapter = shareable_folder(path)
    api = HfApi()
    whoami(api)
    with tempfile.TemporaryDirectory(prefix="scratchgpt-push-") as tmp:
        stage = _staged_copy(folder, repo_id, base_model, is_adapter, Path(tmp))
        try:
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            kind = "adapter" if is_adapter else "model"
            api.upload_folder(
                repo_id=repo_id,
                folder_path=stage,
                revision=revision,
                commit_message=commit_message or f"Upload ScratchGPT {kind} with hf_scratchgpt",
            )
        except HfHubHTTPError as err:
            raise _hub_errors("push to", repo_id, err) from None
    return str(url)


def pull(repo_id: str, out: str | Path, *, revision: str | None = None, overwrite: bool = False) -> Path:
    """Download `repo_id` (at `revision`) into the folder `out`; it appears only once complete.

    Raises:
        ValueError: A malformed repo id.
        FileExistsError: `out` exists and is not empty, without `overwrite`.
        HubError: A missing repo or revision, no access, or offline mode without a cached copy.
    """
    check_repo_id(repo_id)
    check_output_dir(out, overwrite)
    with atomic_output_dir(out, overwrite) as tmp:
        try:
            snapshot_download(repo_id, revision=revision, local_dir=tmp)
        except (HfHubHTTPError, LocalEntryNotFoundError) as err:
            raise _hub_errors("pull", repo_id, err) from None
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        if not (tmp / "config.json").is_file() and not (tmp / ADAPTER_CONFIG).is_file():
            raise HubError(f"pull {repo_id}: the repo has neither config.json nor adapter_config.json")
    return Path(out)


__all__ = ["HubError", "check_repo_id", "pull", "push_folder", "shareable_folder", "whoami"]
