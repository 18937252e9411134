"""A small Hugging Face Hub for the tests: the Hub's HTTP protocol on 127.0.0.1, state in memory.

The unmodified `huggingface_hub` and `transformers` clients talk to it when `HF_ENDPOINT` points at `HubServer.url`
(set it, with `HF_HUB_DISABLE_XET=1` and a dummy `HF_TOKEN`, before the first Hugging Face import: the clients read
them once, so the tests run the clients in subprocesses). It keeps git-like history: every commit gets a new 40-hex
sha and a parent, branches, tags and `refs/pr/N` point at commits, and a commit that changes nothing creates none.

Endpoints (`{type}` is models, datasets or spaces; `{prefix}` is "", "datasets/" or "spaces/"):

- `GET /api/whoami-v2`, `POST /api/repos/create`, `DELETE /api/repos/delete`, `PUT /api/{type}/{id}/settings`,
  `POST /api/validate-yaml`, `GET /api/{type}` (listing, `author` and `search` filters), `GET /api/agent-harnesses`
  (the client's agent registry: empty).
- `GET /api/{type}/{id}[/revision/{rev}]`, `GET .../tree/{rev}[/{path}]`, `POST .../paths-info/{rev}`,
  `GET .../refs`, `GET .../commits/{rev}`.
- `POST .../preupload/{rev}` (upload mode, `shouldIgnore`, remote `oid`), `POST .../commit/{rev}` (NDJSON: header,
  file, lfsFile, deletedFile, deletedFolder; `parentCommit` gives 412 when stale; `create_pr=1` opens `refs/pr/N`).
- `POST|DELETE .../branch/{name}`, `POST .../tag/{rev}`, `DELETE .../tag/{tag}`.
- LFS: `POST /{prefix}{id}.git/info/lfs/objects/batch` hands out signed upload URLs (`PUT /_lfs/...`, no token
  needed, sha256 and size checked) and a verify URL (`POST /{prefix}{id}.git/info/lfs/objects/verify`).
- `HEAD|GET /{prefix}{id}/resolve/{rev}/{path}` with `X-Repo-Commit`, `ETag` (git blob sha1, or the sha256 of an LFS
  file, which also gets `X-Linked-Etag` and `X-Linked-Size`) and byte ranges (206).

Errors carry `X-Error-Code` (RepoNotFound, RevisionNotFound, EntryNotFound) and `X-Error-Message`. With `tokens`, the
server checks credentials: an unknown token gets 401, writing without a token 401, writing to another namespace 403,
and a private repo is visible to its owner only (others get RepoNotFound: 401 anonymous, 404 with a token).
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import http.server
import itertools
import json
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

LFS_THRESHOLD = 10 * 1024 * 1024  # the Hub rejects regular (non-LFS) files from 10 MiB on
TEST_TOKENS = {"hf_test_token_alice": "alice", "hf_test_token_bob": "bob"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
API_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
LFS_PATTERNS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz *.onnx "
    "*.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar *.tflite *.tgz "
    "*.wasm *.xz *.zip *.zst *tfevents*"
).split()
DEFAULT_GITATTRIBUTES = "".join(f"{pattern} filter=lfs diff=lfs merge=lfs -text\n" for pattern in LFS_PATTERNS)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git LFS pointer file that stands for a large file in the git tree."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _matches(path: str, pattern: str) -> bool:
    """A gitattributes/gitignore-style match: patterns without a slash match the file name anywhere."""
    pattern = pattern.strip()
    if "/" not in pattern.rstrip("/"):
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern.rstrip("/")) or any(
            fnmatch.fnmatchcase(part, pattern.rstrip("/")) for part in path.split("/")[:-1]
        )
    return fnmatch.fnmatchcase(path, pattern.lstrip("/")) or path.startswith(pattern.strip("/") + "/")


class HubError(Exception):
    """An HTTP error answer: status, message and the Hub's `X-Error-Code` (if any)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}


@dataclass(frozen=True)
class RepoFile:
    """A file in a commit's tree. LFS files keep their content in `HubServer.lfs_objects` under `sha256`."""

    path: str
    size: int
    blob_id: str  # git sha1 of the content, or of the LFS pointer
    sha256: str | None = None  # set for LFS files only
    content: bytes | None = field(default=None, repr=False)  # regular files only

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None


@dataclass(frozen=True)
class Commit:
    """One commit: its sha, its parents (none for the initial commit) and the full tree as path -> file."""

    sha: str
    parents: tuple[str, ...]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, RepoFile] = field(repr=False, compare=False)


@dataclass
class Repo:
    """A repository: commits by sha, and the refs that point at them."""

    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)  # head of refs/pr/N at index N - 1

    @property
    def owner(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> str:
        """A branch, tag, `refs/pr/N`, `refs/heads/x`, commit sha or unique sha prefix (7+) -> commit sha."""
        name = revision.removeprefix("refs/heads/")
        if name in self.branches:
            return self.branches[name]
        name = revision.removeprefix("refs/tags/")
        if name in self.tags:
            return self.tags[name]
        number = revision.removeprefix("refs/pr/")
        if revision.startswith("refs/pr/") and number.isdigit() and 0 < int(number) <= len(self.pull_requests):
            return self.pull_requests[int(number) - 1]
        if len(revision) >= 7 and all(c in "0123456789abcdef" for c in revision):
            found = [sha for sha in self.commits if sha.startswith(revision)]
            if len(found) == 1:
                return found[0]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, sha: str) -> list[Commit]:
        """The commits reachable from `sha` along first parents, newest first."""
        commits = []
        while True:
            commits.append(self.commits[sha])
            if not self.commits[sha].parents:
                return commits
            sha = self.commits[sha].parents[0]


@dataclass(frozen=True)
class RecordedRequest:
    """What the server saw of one request, for the tests to check (e.g. that an LFS PUT carried no token)."""

    method: str
    path: str
    authorization: str | None
    user: str | None
    status: int


class HubServer:
    """The in-memory Hub: `HubServer(tokens).start()`, then point `HF_ENDPOINT` at `.url`; `.stop()` at the end.

    `tokens` maps token -> user name; without it, authentication is off and every request acts as user "user".
    """

    def __init__(self, tokens: dict[str, str] | None = None):
        self.tokens = dict(tokens) if tokens is not None else None
        self.repos: dict[tuple[str, str], Repo] = {}  # (repo_type, repo_id) -> repo
        self.lfs_objects: dict[str, bytes] = {}  # sha256 -> content of every uploaded LFS object
        self.requests: list[RecordedRequest] = []
        self.lock = threading.RLock()
        self._secret = secrets.token_bytes(16)  # signs the LFS upload URLs
        self._counter = itertools.count()
        self._httpd: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Serve on 127.0.0.1 and a free port, from a daemon thread."""
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HubHandler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._httpd = self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """The endpoint, e.g. "http://127.0.0.1:43125" (the value for `HF_ENDPOINT`)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running: call start() first")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- inspection, for the tests --------------------------------------------------------------------------------

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo | None:
        """The stored repository, or None."""
        return self.repos.get((repo_type, repo_id))

    def commits(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> list[Commit]:
        """The history of `revision` (first parents, newest first); the initial commit of `create_repo` included."""
        with self.lock:
            repo = self.repos[(repo_type, repo_id)]
            return repo.history(repo.resolve(revision))

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """The content of every file at `revision`, path -> bytes."""
        with self.lock:
            commit = self.commits(repo_id, revision, repo_type)[0]
            return {path: self._content(entry) for path, entry in commit.files.items()}

    def _content(self, entry: RepoFile) -> bytes:
        return self.lfs_objects[entry.sha256] if entry.sha256 is not None else entry.content or b""

    # --- authentication and access --------------------------------------------------------------------------------

    def user_for(self, authorization: str | None) -> str | None:
        """The user a request acts as: None when anonymous; 401 for a token the server does not know."""
        if self.tokens is None:
            return "user"
        if not authorization:
            return None
        token = authorization.removeprefix("Bearer ").strip()
        if token not in self.tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return self.tokens[token]

    def get_repo(self, repo_type: str, repo_id: str, user: str | None, write: bool = False) -> Repo:
        """The repo if `user` may see it (and write to it, with `write`); RepoNotFound, 401 or 403 otherwise."""
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.tokens is not None and user != repo.owner):
            raise HubError(401 if user is None else 404, "Repository not found", "RepoNotFound")
        if write:
            self._check_write(repo.owner, user)
        return repo

    def _check_write(self, namespace: str, user: str | None) -> None:
        if self.tokens is None:
            return
        if user is None:
            raise HubError(401, "You must be authenticated to do this")
        if user != namespace:
            raise HubError(403, f"You don't have the rights to write to the namespace {namespace}")

    # --- repositories ---------------------------------------------------------------------------------------------

    def repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def create_repo(self, repo_type: str, repo_id: str, private: bool, user: str | None) -> tuple[int, Repo]:
        """Create a repo with the Hub's initial commit (a `.gitattributes`); 409 and the repo when it exists."""
        self._check_write(repo_id.split("/")[0], user)
        if (repo_type, repo_id) in self.repos:
            return 409, self.repos[(repo_type, repo_id)]
        repo = Repo(repo_type, repo_id, private, _now())
        content = DEFAULT_GITATTRIBUTES.encode()
        gitattributes = RepoFile(".gitattributes", len(content), git_blob_sha1(content), content=content)
        initial = self._new_commit(repo, (), "initial commit", "", user or "user", {".gitattributes": gitattributes})
        repo.branches["main"] = initial.sha
        self.repos[(repo_type, repo_id)] = repo
        return 200, repo

    def _new_commit(
        self, repo: Repo, parents: tuple[str, ...], title: str, message: str, author: str, files: dict[str, RepoFile]
    ) -> Commit:
        tree = "\n".join(f"{path} {entry.blob_id}" for path, entry in sorted(files.items()))
        raw = f"tree {tree}\nparents {' '.join(parents)}\nauthor {author} {next(self._counter)}\n\n{title}\n{message}"
        commit = Commit(hashlib.sha1(raw.encode()).hexdigest(), parents, title, message, author, _now(), files)
        repo.commits[commit.sha] = commit
        return commit

    # --- uploads --------------------------------------------------------------------------------------------------

    def upload_mode(self, files: dict[str, RepoFile], path: str, size: int) -> str:
        """The upload mode: "lfs" from 10 MiB on or for paths `.gitattributes` tracks with LFS, else "regular"."""
        if size == 0:
            return "regular"
        if size >= LFS_THRESHOLD:
            return "lfs"
        attributes = files.get(".gitattributes")
        text = self._content(attributes).decode(errors="replace") if attributes else ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) > 1 and "filter=lfs" in parts[1:] and _matches(path, parts[0]):
                return "lfs"
        return "regular"

    def ignored(self, files: dict[str, RepoFile], path: str, gitignore: str | None) -> bool:
        """Whether the `.gitignore` (sent with the request, else the repo's) ignores the path (no negations)."""
        if gitignore is None and ".gitignore" in files:
            gitignore = self._content(files[".gitignore"]).decode(errors="replace")
        patterns = [line.strip() for line in (gitignore or "").splitlines()]
        return any(_matches(path, p) for p in patterns if p and not p.startswith(("#", "!")))

    def lfs_signature(self, oid: str, size: int) -> str:
        return hmac.new(self._secret, f"{oid}:{size}".encode(), hashlib.sha256).hexdigest()

    def commit(
        self, repo: Repo, revision: str, lines: list[dict[str, Any]], user: str, create_pr: bool
    ) -> tuple[str, int | None]:
        """Apply an NDJSON commit payload; returns (commit sha, PR number). No change: no new commit."""
        header = next((line["value"] for line in lines if line.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            raise HubError(400, "The commit needs a header line with a summary")
        if revision.startswith("refs/pr/"):
            head = repo.resolve(revision)
        elif revision in repo.branches or revision.removeprefix("refs/heads/") in repo.branches:
            head = repo.branches[revision.removeprefix("refs/heads/")]
        else:
            repo.resolve(revision)  # 404 RevisionNotFound when it is nothing at all
            raise HubError(400, f"Can only commit to a branch or a pull request, not {revision}")
        parent_commit = header.get("parentCommit")
        if parent_commit:
            if create_pr:
                head = repo.resolve(parent_commit)
            elif not head.startswith(parent_commit):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commits[head].files)
        for line in lines:
            key, value = line.get("key"), line.get("value", {})
            path = value.get("path", "")
            if key == "file":
                content = base64.b64decode(value["content"]) if value.get("encoding") == "base64" else value["content"]
                content = content.encode() if isinstance(content, str) else content
                if len(content) >= LFS_THRESHOLD:
                    raise HubError(400, f"Your push was rejected: {path} is 10 MiB or more, use git-lfs")
                files[path] = RepoFile(path, len(content), git_blob_sha1(content), content=content)
            elif key == "lfsFile":
                oid = value["oid"]
                if oid not in self.lfs_objects:
                    raise HubError(400, f"LFS object {oid} for {path} was not uploaded")
                size = len(self.lfs_objects[oid])
                files[path] = RepoFile(path, size, git_blob_sha1(lfs_pointer(oid, size)), sha256=oid)
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                inside = [p for p in files if p.startswith(prefix)]
                if not inside:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in inside:
                    del files[p]
            elif key != "header":
                raise HubError(400, f"Unsupported commit operation: {key}")
        sha = head
        if files != repo.commits[head].files:
            sha = self._new_commit(repo, (head,), header["summary"], header.get("description", ""), user, files).sha
        if create_pr:
            repo.pull_requests.append(sha)
            return sha, len(repo.pull_requests)
        if revision.startswith("refs/pr/"):
            repo.pull_requests[int(revision[8:]) - 1] = sha
        else:
            repo.branches[revision.removeprefix("refs/heads/")] = sha
        return sha, None

    # --- JSON views -----------------------------------------------------------------------------------------------

    def file_json(self, entry: RepoFile) -> dict[str, Any]:
        """A tree / paths-info entry for a file."""
        data: dict[str, Any] = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": entry.path}
        if entry.sha256 is not None:
            pointer_size = len(lfs_pointer(entry.sha256, entry.size))
            data["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": pointer_size}
        return data

    def last_commit_json(self, repo: Repo, sha: str, path: str) -> dict[str, str]:
        """The newest commit of the history of `sha` that changed `path` (a file, or anything in a folder)."""

        def under(commit: Commit) -> dict[str, RepoFile]:
            return {p: e for p, e in commit.files.items() if p == path or p.startswith(path + "/")}

        history = repo.history(sha)
        for commit, older in itertools.zip_longest(history, history[1:]):
            if older is None or under(older) != under(commit):
                return {"id": commit.sha, "title": commit.title, "date": commit.date}
        raise AssertionError("unreachable: the initial commit has no parent")

    def entry_json(self, repo: Repo, sha: str, path: str, expand: bool) -> dict[str, Any] | None:
        """A tree / paths-info entry (file or folder) at `sha`; None when there is no such path."""
        files = repo.commits[sha].files
        path = path.strip("/")
        if path in files:
            data = self.file_json(files[path])
        elif any(p.startswith(path + "/") for p in files):
            oid = hashlib.sha1(f"{sha}:{path}".encode()).hexdigest()
            data = {"type": "directory", "oid": oid, "size": 0, "path": path}
        else:
            return None
        if expand:
            data["lastCommit"] = self.last_commit_json(repo, sha, path)
        return data

    def info_json(self, repo: Repo, sha: str, blobs: bool) -> dict[str, Any]:
        """`repo_info` / `model_info` / `dataset_info`."""
        commit = repo.commits[sha]
        siblings = []
        for path, entry in sorted(commit.files.items()):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=entry.size, blobId=entry.blob_id)
                if entry.sha256 is not None:
                    pointer_size = len(lfs_pointer(entry.sha256, entry.size))
                    sibling["lfs"] = {"sha256": entry.sha256, "size": entry.size, "pointerSize": pointer_size}
            siblings.append(sibling)
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.owner,
            "sha": sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }


@dataclass
class _Call:
    """One call of a repo endpoint: the repo (access already checked), the path after the action, and the rest."""

    repo: Repo
    args: list[str]
    query: dict[str, str]
    body: bytes
    user: str | None

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")


@dataclass
class _Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def _json(data: Any, status: int = 200, content_type: str = "application/json") -> _Reply:
    return _Reply(status, json.dumps(data).encode(), content_type=content_type)


class _HubHandler(http.server.BaseHTTPRequestHandler):
    """Reads the request, routes it to the `HubServer` (under its lock) and writes the reply."""

    protocol_version = "HTTP/1.1"
    server_version = "ScratchGPTTestHub/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    @property
    def hub(self) -> HubServer:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        body = self._read_body()  # always read it all: the connection is kept alive
        split = urlsplit(self.path)
        segments = [unquote(s) for s in split.path.strip("/").split("/")] if split.path.strip("/") else []
        query = {key: values[-1] for key, values in parse_qs(split.query).items()}
        authorization = self.headers.get("Authorization")
        user = None
        try:
            with self.hub.lock:
                user = self.hub.user_for(authorization)
                reply = self._route(method, segments, query, body, user)
        except HubError as error:
            message = error.message.encode("ascii", "backslashreplace").decode()  # headers are latin-1 only
            headers = {"X-Error-Message": message, **error.headers}
            if error.code:
                headers["X-Error-Code"] = error.code
            reply = _Reply(error.status, json.dumps({"error": error.message}).encode(), headers)
        except Exception as error:  # a bug here: answer 500 with the reason, so the client's error shows it
            reply = _Reply(500, json.dumps({"error": f"{type(error).__name__}: {error}"}).encode())
        with self.hub.lock:
            self.hub.requests.append(RecordedRequest(method, self.path, authorization, user, reply.status))
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))  # for HEAD too: the size of what GET sends
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(reply.body)

    # --- routing --------------------------------------------------------------------------------------------------

    def _route(self, method: str, seg: list[str], query: dict[str, str], body: bytes, user: str | None) -> _Reply:
        hub = self.hub
        if seg[:1] == ["api"]:
            return self._route_api(method, seg[1:], query, body, user)
        if seg[:1] == ["_lfs"] and method == "PUT" and len(seg) == 2:
            return self._lfs_put(seg[1], query, body)
        repo_type = "model"
        if seg and seg[0] in ("datasets", "spaces"):
            repo_type, seg = seg[0][:-1], seg[1:]
        if len(seg) >= 2 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"] and method == "POST":
            repo = hub.get_repo(repo_type, f"{seg[0]}/{seg[1][:-4]}", user, write=True)
            if seg[5:] == ["batch"]:
                return self._lfs_batch(repo, json.loads(body))
            if seg[5:] == ["verify"]:
                oid = json.loads(body)["oid"]
                return _json({"ok": True}) if oid in hub.lfs_objects else _json({"message": "not found"}, 404)
        if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
            repo = hub.get_repo(repo_type, f"{seg[0]}/{seg[1]}", user)
            return self._resolve(repo, seg[3], "/".join(seg[4:]))
        raise HubError(404, f"No route for {method} {self.path}")

    def _route_api(self, method: str, seg: list[str], query: dict[str, str], body: bytes, user: str | None) -> _Reply:
        hub = self.hub
        if seg == ["whoami-v2"] and method == "GET":
            if user is None:
                raise HubError(401, "Invalid credentials in Authorization header")
            token = {"displayName": "test", "role": "write"}
            return _json({"type": "user", "id": user, "name": user, "fullname": user, "orgs": [],
                          "auth": {"type": "access_token", "accessToken": token}})  # fmt: skip
        if seg == ["agent-harnesses"] and method == "GET":  # the client's agent detection registry: none here
            return _json({"standardEnvVars": [], "harnesses": {}})
        if seg == ["validate-yaml"] and method == "POST":
            return _json({"errors": [], "warnings": []})
        if seg == ["repos", "create"] and method == "POST":
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or user or 'user'}/{payload['name']}"
            private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
            status, repo = hub.create_repo(payload.get("type") or "model", repo_id, private, user)
            if status == 409:
                return _json({"error": "You already created this repo", "url": hub.repo_url(repo)}, 409)
            return _json({"url": hub.repo_url(repo), "name": repo.repo_id, "id": repo.repo_id})
        if seg == ["repos", "delete"] and method == "DELETE":
            payload = json.loads(body)
            repo_id = f"{payload.get('organization') or user}/{payload['name']}"
            repo = hub.get_repo(payload.get("type") or "model", repo_id, user, write=True)
            del hub.repos[(repo.repo_type, repo.repo_id)]
            return _json({})
        if len(seg) == 1 and seg[0] in API_TYPES and method == "GET":
            visible = [
                r for r in hub.repos.values()
                if r.repo_type == API_TYPES[seg[0]] and (not r.private or hub.tokens is None or r.owner == user)
                and query.get("author", r.owner) == r.owner and query.get("search", "") in r.repo_id
            ]  # fmt: skip
            return _json([hub.info_json(r, r.branches["main"], blobs=False) for r in visible])
        if len(seg) >= 3 and seg[0] in API_TYPES:
            repo_type, repo_id, rest = API_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
            return self._route_repo_api(method, repo_type, repo_id, rest, query, body, user)
        raise HubError(404, f"No route for {method} {self.path}")

    def _route_repo_api(
        self, method: str, repo_type: str, repo_id: str, rest: list[str], query: dict[str, str], body: bytes,
        user: str | None,
    ) -> _Reply:  # fmt: skip
        """`/api/{type}s/{ns}/{name}/{action}/{args}` -> `_api_{method}_{action}(repo, args, query, body, user)`."""
        action, args = (rest[0], rest[1:]) if rest else ("info", [])
        endpoint = getattr(self, f"_api_{method.lower()}_{action.replace('-', '_')}", None)
        if endpoint is None:
            raise HubError(404, f"No route for {method} {self.path}")
        writes = method in ("PUT", "DELETE") or (method == "POST" and action != "paths-info")
        repo = self.hub.get_repo(repo_type, repo_id, user, write=writes)
        return endpoint(_Call(repo, args, query, body, user))

    def _api_get_info(self, call: _Call) -> _Reply:
        sha = call.repo.resolve(call.args[0] if call.args else "main")
        return _json(self.hub.info_json(call.repo, sha, blobs=call.flag("blobs")))

    _api_get_revision = _api_get_info  # /revision/{rev}

    def _api_get_tree(self, call: _Call) -> _Reply:
        sha, path = call.repo.resolve(call.args[0]), "/".join(call.args[1:])
        files = call.repo.commits[sha].files
        prefix = f"{path}/" if path else ""
        below = [p[len(prefix) :] for p in files if p.startswith(prefix)]
        if path and not below:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": sha})
        names: set[str] = set()
        for rel in below:
            parts = rel.split("/")
            names.update("/".join(parts[: i + 1]) for i in range(len(parts) if call.flag("recursive") else 1))
        expand = call.flag("expand")
        return _json([self.hub.entry_json(call.repo, sha, prefix + name, expand) for name in sorted(names)])

    def _api_post_paths_info(self, call: _Call) -> _Reply:
        sha = call.repo.resolve(call.args[0])
        form = parse_qs(call.body.decode())
        expand = form.get("expand", ["false"])[-1].lower() in ("1", "true")
        entries = [self.hub.entry_json(call.repo, sha, path, expand) for path in form.get("paths", [])]
        return _json([entry for entry in entries if entry is not None])

    def _api_get_refs(self, call: _Call) -> _Reply:
        def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": sha} for n, sha in sorted(names.items())]

        data = {"branches": refs(call.repo.branches, "heads"), "converts": [], "tags": refs(call.repo.tags, "tags")}
        if call.flag("include_prs"):
            data["pullRequests"] = [
                {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": sha}
                for n, sha in enumerate(call.repo.pull_requests, 1)
            ]
        return _json(data)

    def _api_get_commits(self, call: _Call) -> _Reply:
        return _json([
            {"id": c.sha, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": c.author}],
             "formatted": {"title": c.title, "message": c.message}}
            for c in call.repo.history(call.repo.resolve(call.args[0]))
        ])  # fmt: skip

    def _api_post_preupload(self, call: _Call) -> _Reply:
        """Per file: `uploadMode`, `shouldIgnore` and the remote `oid` (sha256 for LFS, blob sha1 otherwise)."""
        sha = call.repo.resolve(call.args[0])
        files, payload = call.repo.commits[sha].files, json.loads(call.body)
        answers = []
        for item in payload["files"]:
            path, mode = item["path"], self.hub.upload_mode(files, item["path"], item["size"])
            remote, oid = files.get(path), None
            if remote is not None:
                oid = remote.sha256 if mode == "lfs" else (None if remote.is_lfs else remote.blob_id)
            ignore = self.hub.ignored(files, path, payload.get("gitIgnore"))
            answers.append({"path": path, "uploadMode": mode, "shouldIgnore": ignore, "oid": oid})
        return _json({"files": answers, "commitOid": sha})

    def _api_post_commit(self, call: _Call) -> _Reply:
        lines = [json.loads(line) for line in call.body.splitlines() if line.strip()]
        sha, pr = self.hub.commit(call.repo, call.args[0], lines, call.user or "user", create_pr=call.flag("create_pr"))
        url = self.hub.repo_url(call.repo)
        return _json({"success": True, "commitOid": sha, "commitUrl": f"{url}/commit/{sha}", "hookOutput": "",
                      "pullRequestUrl": f"{url}/discussions/{pr}" if pr else None})  # fmt: skip

    def _api_post_branch(self, call: _Call) -> _Reply:
        if call.args[0] in call.repo.branches:
            raise HubError(409, f"Branch {call.args[0]} already exists")
        starting_point = json.loads(call.body or b"{}").get("startingPoint") or "main"
        call.repo.branches[call.args[0]] = call.repo.resolve(starting_point)
        return _json({})

    def _api_delete_branch(self, call: _Call) -> _Reply:
        if call.args[0] == "main":
            raise HubError(403, "You cannot delete the default branch")
        if call.repo.branches.pop(call.args[0], None) is None:
            raise HubError(404, f"Invalid rev id: {call.args[0]}", "RevisionNotFound")
        return _json({})

    def _api_post_tag(self, call: _Call) -> _Reply:
        tag = json.loads(call.body)["tag"]
        if tag in call.repo.tags:
            raise HubError(409, f"Tag {tag} already exists")
        call.repo.tags[tag] = call.repo.resolve(call.args[0])
        return _json({})

    def _api_delete_tag(self, call: _Call) -> _Reply:
        if call.repo.tags.pop(call.args[0], None) is None:
            raise HubError(404, f"Invalid rev id: {call.args[0]}", "RevisionNotFound")
        return _json({})

    def _api_put_settings(self, call: _Call) -> _Reply:
        payload = json.loads(call.body)
        if "visibility" in payload:
            call.repo.private = payload["visibility"] == "private"
        elif "private" in payload:
            call.repo.private = bool(payload["private"])
        return _json({})

    # --- downloads --------------------------------------------------------------------------------------------------

    def _resolve(self, repo: Repo, revision: str, path: str) -> _Reply:
        sha = repo.resolve(revision)
        entry = repo.commits[sha].files.get(path)
        if entry is None:
            raise HubError(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": sha})
        content = self.hub._content(entry)
        headers = {"X-Repo-Commit": sha, "Accept-Ranges": "bytes", "ETag": f'"{entry.sha256 or entry.blob_id}"'}
        if entry.sha256 is not None:
            headers.update({"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)})
        range_header = self.headers.get("Range")
        if not range_header:
            return _Reply(200, content, headers, "application/octet-stream")
        start_text, _, end_text = range_header.removeprefix("bytes=").split(",")[0].strip().partition("-")
        size = len(content)
        if start_text:
            start, end = int(start_text), min(int(end_text) if end_text else size - 1, size - 1)
        else:
            start, end = max(size - int(end_text), 0), size - 1
        if start >= size or start > end:
            headers["Content-Range"] = f"bytes */{size}"
            return _Reply(416, b"", headers)
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        return _Reply(206, content[start : end + 1], headers, "application/octet-stream")

    # --- LFS ------------------------------------------------------------------------------------------------------

    def _lfs_batch(self, repo: Repo, payload: dict[str, Any]) -> _Reply:
        """Upload instructions: a signed URL per missing object; known objects get no `actions`."""
        hub = self.hub
        if payload.get("operation") != "upload":
            raise HubError(400, "Only the upload operation is supported")
        objects = []
        verify = f"{hub.repo_url(repo)}.git/info/lfs/objects/verify"
        for item in payload["objects"]:
            oid, size = item["oid"], item["size"]
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in hub.lfs_objects:
                href = f"{hub.url}/_lfs/{oid}?size={size}&sig={hub.lfs_signature(oid, size)}"
                answer["actions"] = {"upload": {"href": href}, "verify": {"href": verify}}
            objects.append(answer)
        return _json({"transfer": "basic", "objects": objects}, content_type="application/vnd.git-lfs+json")

    def _lfs_put(self, oid: str, query: dict[str, str], body: bytes) -> _Reply:
        """The signed upload URL: no token, but the signature, size and sha256 must match."""
        size = int(query.get("size", "-1"))
        if not hmac.compare_digest(query.get("sig", ""), self.hub.lfs_signature(oid, size)):
            raise HubError(403, "Bad signature")
        if len(body) != size or hashlib.sha256(body).hexdigest() != oid:
            raise HubError(400, "The content does not match the announced sha256 and size")
        self.hub.lfs_objects[oid] = body
        return _Reply(200, b"", {"ETag": f'"{oid}"'})


def client_env(server: HubServer, token: str | None = "hf_test_token_alice", **extra: str) -> dict[str, str]:
    """The environment of a fresh process whose Hugging Face clients talk to `server`: online, no Xet, an empty
    HF_HOME (nothing cached: downloads come from the server), `token` as HF_TOKEN (None: no token at all)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    env.update(
        HF_ENDPOINT=server.url,
        HF_HUB_OFFLINE="0",
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HOME=tempfile.mkdtemp(prefix="hf-home-"),
        OMP_NUM_THREADS="1",
        **extra,
    )
    if token is not None:
        env["HF_TOKEN"] = token
    return env


@pytest.fixture
def hub_server() -> Iterator[HubServer]:
    """A running `HubServer` that checks tokens: `hf_test_token_alice` is alice, `hf_test_token_bob` is bob."""
    with HubServer(tokens=TEST_TOKENS) as server:
        yield server
