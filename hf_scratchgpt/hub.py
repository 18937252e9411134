"""Sharing through the Hugging Face Hub: push a run's final folder (or a LoRA run's adapter), pull a repo.

A pushed repo is a plain Hugging Face folder: safetensors weights, config.json with its `auto_map`,
the remote-code files, the tokenizer with its chat template, generation_config.json, the model card
(its local paths rewritten to the repo id) and the loss plot. A LoRA run pushes its peft adapter,
which must name a base model on the Hub. The token comes from `HF_TOKEN` or `hf auth login`; it is
never printed, and a missing or refused token stops before anything is uploaded.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, constants, get_token, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .folders import atomic_output_dir, check_output_dir

ADAPTER_CONFIG = "adapter_config.json"
REPO_ID = re.compile(r"^(?:[A-Za-z0-9][\w.-]{0,95}/)?[A-Za-z0-9][\w.-]{0,95}$")  # namespace/name, or a bare name


class HubError(OSError):
    """A Hub operation that could not be done (no token, a refused token, a missing repo), in one line."""


@dataclass(frozen=True)
class Pushed:
    """What a push did: the folder uploaded, the repo's id and URL, and whether it made a commit (False: the repo
    already held the files)."""

    folder: Path
    repo_id: str
    url: str
    changed: bool


def check_repo_id(repo_id: str, what: str = "repo id") -> str:
    """`repo_id` if it has the Hub's form: `namespace/name`, or a bare `name` (a legacy id, or the user's own).

    Raises:
        ValueError: naming the value and the expected form.
    """
    if not REPO_ID.match(repo_id) or ".." in repo_id or repo_id.endswith((".git", ".")):
        raise ValueError(f"{what} {repo_id!r} is not a Hub repo id; expected namespace/name, e.g. alice/my-gpt")
    return repo_id


def _hub_error(action: str, target: str, err: Exception, revision: str | None = None) -> HubError:
    """One line for a failed Hub call: what was done to what, and why (the token is never part of it)."""
    where, head = constants.ENDPOINT, f"{action} {target}"
    if isinstance(err, RevisionNotFoundError):
        return HubError(f"{head}: the revision {revision!r} does not exist on {where}")
    if isinstance(err, (RepositoryNotFoundError, GatedRepoError)):
        return HubError(
            f"{head}: no such repo on {where}, or it is private and the token (HF_TOKEN or `hf auth login`) "
            "does not give access"
        )
    if isinstance(err, LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE:
        return HubError(f"{head}: HF_HUB_OFFLINE=1 is set and the repo is not in the local cache")
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status == 401:
        return HubError(f"{head}: {where} refused the token (401); set a valid HF_TOKEN")
    if status == 403:
        return HubError(f"{head}: the token may not write there (403)")
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not isinstance(err, HfHubHTTPError):  # no answer at all
        return HubError(f"{head}: cannot reach {where} ({type(err).__name__}: {first})")
    return HubError(f"{head}: {first}")


@contextlib.contextmanager
def _hub_calls(action: str, target: str, revision: str | None = None) -> Iterator[None]:
    """Turn a failed Hub call in the block into one `HubError` line: an HTTP answer (huggingface_hub's errors),
    no answer at all (the HTTP library's own errors, whichever library it is) or a local file problem."""
    try:
        yield
    except Exception as err:
        transport = type(err).__module__.split(".")[0] in ("httpx", "httpx2", "requests", "urllib3")
        if transport or isinstance(err, (HfHubHTTPError, LocalEntryNotFoundError, OSError)):
            raise _hub_error(action, target, err, revision) from None
        raise


def check_push_access(repo_id: str, api: HfApi | None = None) -> str:
    """The full id `repo_id` will have, once the token is known to belong to someone who may write there.

    A bare name goes to the token's user. Writing is allowed in the user's own namespace and in the
    namespaces of the organisations the user belongs to.

    Raises:
        ValueError: A malformed repo id.
        HubError: Offline mode, no token, a refused token, another namespace, or an unreachable Hub.
    """
    check_repo_id(repo_id)
    api = api or HfApi()
    if constants.HF_HUB_OFFLINE:
        raise HubError(f"push to {repo_id}: pushing needs the Hub, but HF_HUB_OFFLINE=1 is set")
    if api.token is None and get_token() is None:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
    with _hub_calls("push to", repo_id):
        info = api.whoami()
    user = info["name"]
    allowed = {user} | {org["name"] for org in info.get("orgs") or [] if "name" in org}
    namespace, _, name = repo_id.rpartition("/")
    if not namespace:
        return f"{user}/{name}"
    if namespace not in allowed:
        raise HubError(f"push to {repo_id}: the token is {user}'s, who may not write to the namespace {namespace!r}")
    return repo_id


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


def _local_name(path: str) -> str:
    """How a card names a local folder once pushed: its last two path parts, never the machine's absolute path."""
    return "/".join(Path(path).parts[-2:])


def _rewrite_card(text: str, repo_id: str, base_model: str | None, is_adapter: bool) -> str:
    """The card as pushed: the folder's own local path in its examples becomes `repo_id`, the base model's local
    path becomes `base_model` (or, without one, the folder's last two path parts), any other absolute path of
    this machine its last two parts, and `base_model` goes into the YAML header."""
    if is_adapter:
        own = set(re.findall(r'PeftModel\.from_pretrained\(base, "([^"]+)"\)', text))
        bases = set(re.findall(r'(?:AutoModel\w*|AutoTokenizer)\.from_pretrained\("([^"]+)"', text))
        bases |= set(re.findall(r"for the ScratchGPT model `([^`]+)`", text))
    else:
        own = set(re.findall(r'(?:from_pretrained\(|model=)"([^"]+)"', text))
        own |= set(re.findall(r"`?scratchgpt (?:chat|classify|generate) ([^\s`\"]+)", text))
        bases = set(re.findall(r"\| base model \| `([^`]+)` \|", text))
    replacements = {old: repo_id for old in own}
    replacements |= {old: base_model or _local_name(old) for old in bases if Path(old).exists() or old != base_model}
    for old, new in sorted(replacements.items(), key=lambda item: -len(item[0])):
        if old != new:
            text = text.replace(f'"{old}"', f'"{new}"').replace(f"`{old}`", f"`{new}`")
            text = re.sub(rf"(scratchgpt (?:chat|classify|generate) ){re.escape(old)}(?=[\s`])", rf"\g<1>{new}", text)
    for path in set(re.findall(r"(?<![\w.])/[^\s`|\"'(),]+", text)):  # this machine's paths (data, ...) say less
        if Path(path).exists():
            text = text.replace(path, _local_name(path))
    for path in set(re.findall(r"(?<![\w./])(?:\.\.?/)+[^\s`|\"'(),]+", text)):  # ../shared/data/x.json, ./runs/a
        text = text.replace(path, _local_name(path))
    if base_model is None:
        return text
    card = ModelCard(text)
    card.data.base_model = base_model
    return str(card)


def _staged_copy(folder: Path, repo_id: str, base_model: str | None, is_adapter: bool, into: Path) -> Path:
    """A copy of `folder` as the repo will hold it: the card rewritten, an adapter's base model set to `base_model`;
    a model folder goes without the `adapter/` a LoRA run leaves beside the merged weights (it is pushed alone)."""
    stage = into / "repo"
    skip = (".*", "__pycache__") if is_adapter else (".*", "__pycache__", "adapter")
    shutil.copytree(folder, stage, ignore=shutil.ignore_patterns(*skip))
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
) -> Pushed:
    """Make `repo_id` (at branch `revision`) hold a model folder, a run's final folder or a LoRA run's adapter.

    The repo (and the branch, from main) is created if needed, and made private with `private`. The
    branch ends up holding exactly the folder's files: files it had that the folder lacks are
    deleted, files it already has unchanged are not uploaded again, and when nothing changes no
    commit is made.

    Raises:
        ValueError: A malformed repo id, or an adapter whose base model is only a local folder.
        FileNotFoundError: `path` is not a model, adapter or run folder.
        HubError: No token, a refused token, another user's namespace, or a failed Hub call (one line; the
            token never appears).
    """
    if base_model is not None:
        check_repo_id(base_model, "--base-model")
    folder, is_adapter = shareable_folder(path)
    api = HfApi()
    repo_id = check_push_access(repo_id, api)
    with tempfile.TemporaryDirectory(prefix="scratchgpt-push-") as tmp:
        stage = _staged_copy(folder, repo_id, base_model, is_adapter, Path(tmp))
        with _hub_calls("push to", repo_id, revision):
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            if private:
                api.update_repo_settings(repo_id, private=True)  # also when the repo existed
            if revision not in (None, "main"):
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            before = api.repo_info(repo_id, revision=revision).sha
            kind = "adapter" if is_adapter else "model"
            commit = api.upload_folder(
                repo_id=repo_id,
                folder_path=stage,
                revision=revision,
                commit_message=commit_message or f"Upload ScratchGPT {kind} with hf_scratchgpt",
                delete_patterns="*",  # the branch mirrors the folder (.gitattributes is kept)
            )
    return Pushed(folder=folder, repo_id=repo_id, url=str(url), changed=commit.oid != before)


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
        with _hub_calls("pull", repo_id, revision):
            snapshot_download(repo_id, revision=revision, local_dir=tmp)
        shutil.rmtree(tmp / ".cache", ignore_errors=True)  # huggingface_hub's download bookkeeping
        if not (tmp / "config.json").is_file() and not (tmp / ADAPTER_CONFIG).is_file():
            raise HubError(f"pull {repo_id}: the repo has neither config.json nor adapter_config.json")
    return Path(out)


__all__ = ["HubError", "Pushed", "check_push_access", "check_repo_id", "pull", "push_folder", "shareable_folder"]
