"""Push and pull with the unmodified Hugging Face clients against the in-memory Hub of `tests/hub_server.py`.

The clients read `HF_ENDPOINT`, `HF_HUB_OFFLINE` and `HF_HUB_DISABLE_XET` once, at import, and this test process is
offline (conftest), so every client call runs in a fresh subprocess with its own empty `HF_HOME`: what it downloads
really comes from the server. The server runs in this process, where the tests inspect its history and storage.
"""

import hashlib
import http.client
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.hub_server import LFS_THRESHOLD, HubServer, client_env, git_blob_sha1

ALICE, BOB = "hf_test_token_alice", "hf_test_token_bob"

# Run first in every client subprocess: `report(...)` prints the result as the last line of stdout, `failure(...)`
# turns the exception of a call into [exception class name, HTTP status or None] ("ok" when it does not raise).
PRELUDE = """
import json, os, sys
from pathlib import Path
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()

def report(**results):
    print(json.dumps(results))

def failure(function, *args, **kwargs):
    try:
        function(*args, **kwargs)
    except Exception as error:
        response = getattr(error, "response", None)
        return [type(error).__name__, getattr(response, "status_code", None)]
    return "ok"
"""


def run_client(server: HubServer, code: str, token: str | None = ALICE, **env: str) -> dict[str, Any]:
    """Run `code` (after PRELUDE) in a fresh Python with the Hub clients pointed at `server`; returns its report."""
    clean = client_env(server, token, **env)
    script = PRELUDE + textwrap.dedent(code)
    proc = subprocess.run([sys.executable, "-c", script], env=clean, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"client failed:\n{proc.stdout}\n{proc.stderr}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["stderr"] = proc.stderr
    return result


def make_folder(root: Path, files: dict[str, bytes | str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    return root


SMALL_FILES = {
    "config.json": '{"answer": 42}\n',
    "README.md": "---\nlicense: mit\n---\n# A test model\n",
    "notes/hello.txt": "hello hub\n",
}


def test_server_binds_loopback_and_stops():
    with HubServer() as server:
        assert server.url.startswith("http://127.0.0.1:")
        assert server._httpd is not None and server._httpd.server_address[0] == "127.0.0.1"
        with urllib.request.urlopen(f"{server.url}/api/whoami-v2") as response:  # no tokens: auth is off
            assert json.load(response)["name"] == "user"
    with pytest.raises(RuntimeError):
        server.url  # noqa: B018


def test_create_upload_and_reupload_is_a_no_op(hub_server, tmp_path):
    folder = make_folder(tmp_path / "model", SMALL_FILES)
    result = run_client(
        hub_server,
        f"""
        urls = [api.create_repo("alice/tiny", exist_ok=True), api.create_repo("alice/tiny", exist_ok=True)]
        first = api.upload_folder(repo_id="alice/tiny", folder_path={str(folder)!r})
        second = api.upload_folder(repo_id="alice/tiny", folder_path={str(folder)!r})
        local = snapshot_download("alice/tiny")
        files = {{p.relative_to(local).as_posix(): p.read_text() for p in Path(local).rglob("*") if p.is_file()}}
        report(urls=urls, first=first.oid, second=second.oid, files=files, whoami=api.whoami()["name"])
        """,
    )
    assert result["whoami"] == "alice"
    assert result["urls"] == [f"{hub_server.url}/alice/tiny"] * 2
    history = hub_server.commits("alice/tiny")
    assert len(history) == 2  # the initial commit (.gitattributes) and one upload: the second upload changed nothing
    assert result["first"] == result["second"] == history[0].sha and len(history[0].sha) == 40
    assert history[0].parents == (history[1].sha,) and history[1].parents == ()
    assert "No files have been modified since last commit" in result["stderr"]
    assert {k: v for k, v in result["files"].items() if k != ".gitattributes"} == SMALL_FILES
    assert hub_server.files("alice/tiny")["notes/hello.txt"] == b"hello hub\n"
    assert not hub_server.lfs_objects  # small text files are regular git blobs


def test_large_file_goes_through_lfs(hub_server, tmp_path):
    big = os.urandom(LFS_THRESHOLD)
    sha256 = hashlib.sha256(big).hexdigest()
    folder = make_folder(tmp_path / "big", {"data/big.raw": big, "small.txt": "small\n"})
    code = f"""
        import hashlib
        api.create_repo("alice/big", exist_ok=True)
        api.upload_folder(repo_id="alice/big", folder_path={str(folder)!r})
        api.upload_folder(repo_id="alice/big", folder_path={str(folder)!r})  # unchanged: nothing to send
        path = hf_hub_download("alice/big", "data/big.raw")
        [entry] = api.get_paths_info("alice/big", ["data/big.raw"])
        report(sha256=hashlib.sha256(Path(path).read_bytes()).hexdigest(), lfs=entry.lfs.sha256, size=entry.size)
        """
    result = run_client(hub_server, code)
    assert result == {"sha256": sha256, "lfs": sha256, "size": len(big), "stderr": result["stderr"]}
    assert list(hub_server.lfs_objects) == [sha256]
    assert len(hub_server.commits("alice/big")) == 2
    puts = [r for r in hub_server.requests if r.method == "PUT" and r.path.startswith("/_lfs/")]
    assert len(puts) == 1 and puts[0].authorization is None  # signed URL, token not sent; once only
    # (The server refuses regular files from 10 MiB on, so the commit had to refer to the LFS object.)
    request = urllib.request.Request(f"{hub_server.url}/alice/big/resolve/main/data/big.raw", method="HEAD")
    request.add_header("Authorization", f"Bearer {ALICE}")
    with urllib.request.urlopen(request) as response:
        assert response.headers["X-Linked-Etag"] == response.headers["ETag"] == f'"{sha256}"'
        assert response.headers["X-Linked-Size"] == str(len(big))
        assert response.headers["X-Repo-Commit"] == hub_server.commits("alice/big")[0].sha


def test_resolve_headers_and_ranges(hub_server, tmp_path):
    folder = make_folder(tmp_path / "f", {"text.txt": "0123456789"})
    upload = f"api.create_repo('alice/ranges'); api.upload_folder(repo_id='alice/ranges', folder_path={str(folder)!r})"
    run_client(hub_server, upload + "; report()")
    url = f"{hub_server.url}/alice/ranges/resolve/main/text.txt"
    with urllib.request.urlopen(url) as response:  # public repo: anonymous reads work
        assert response.read() == b"0123456789"
        assert response.headers["ETag"] == f'"{git_blob_sha1(b"0123456789")}"'
        assert "X-Linked-Etag" not in response.headers
    for header, status, body, content_range in [
        ("bytes=2-4", 206, b"234", "bytes 2-4/10"),
        ("bytes=7-", 206, b"789", "bytes 7-9/10"),
        ("bytes=-2", 206, b"89", "bytes 8-9/10"),
    ]:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Range": header})) as response:
            assert (response.status, response.read(), response.headers["Content-Range"]) == (
                status,
                body,
                content_range,
            )
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=20-"}))
    assert error.value.code == 416


def test_lfs_batch_signed_urls_and_chunked_upload(hub_server):
    """The LFS protocol without a client: batch, a chunked PUT to the signed URL, a forged URL, the verify call."""
    hub_server.create_repo("model", "alice/raw", private=False, user="alice")
    data = b"x" * 1000
    oid = hashlib.sha256(data).hexdigest()
    batch = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(data)}]}
    request = urllib.request.Request(
        f"{hub_server.url}/alice/raw.git/info/lfs/objects/batch",
        data=json.dumps(batch).encode(),
        headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        [answer] = json.load(response)["objects"]
    upload = urlsplit(answer["actions"]["upload"]["href"])
    connection = http.client.HTTPConnection(upload.hostname, upload.port, timeout=10)  # no token: the URL is signed
    try:
        connection.request("PUT", f"{upload.path}?{upload.query}".replace("sig=", "sig=0"), body=data)
        response = connection.getresponse()
        assert (response.status, response.read()) == (403, b'{"error": "Bad signature"}')
        connection.request("PUT", f"{upload.path}?{upload.query}", body=iter([data[:300], data[300:]]))  # chunked
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
    finally:
        connection.close()
    assert hub_server.lfs_objects == {oid: data}
    verify = urllib.request.Request(
        answer["actions"]["verify"]["href"],
        data=json.dumps({"oid": oid, "size": len(data)}).encode(),
        headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(verify) as response:
        assert response.status == 200
    with urllib.request.urlopen(request) as response:  # the same batch again: the object is known, nothing to upload
        assert "actions" not in json.load(response)["objects"][0]


def test_branch_upload_and_snapshot_download(hub_server, tmp_path):
    main = make_folder(tmp_path / "main", {"config.json": '{"v": 1}'})
    dev = make_folder(tmp_path / "dev", {"config.json": '{"v": 2}', "extra.txt": "only on dev"})
    result = run_client(
        hub_server,
        f"""
        api.create_repo("alice/branchy")
        api.upload_folder(repo_id="alice/branchy", folder_path={str(main)!r})
        api.create_branch("alice/branchy", branch="dev")
        api.create_branch("alice/branchy", branch="dev", exist_ok=True)
        api.upload_folder(repo_id="alice/branchy", folder_path={str(dev)!r}, revision="dev")
        dev_dir, main_dir = snapshot_download("alice/branchy", revision="dev"), snapshot_download("alice/branchy")
        refs = api.list_repo_refs("alice/branchy")
        report(
            dev=sorted(p.name for p in Path(dev_dir).iterdir()), main=sorted(p.name for p in Path(main_dir).iterdir()),
            dev_config=Path(dev_dir, "config.json").read_text(), main_config=Path(main_dir, "config.json").read_text(),
            branches=sorted(b.name for b in refs.branches),
        )
        """,
    )
    assert result["dev"] == [".gitattributes", "config.json", "extra.txt"]
    assert result["main"] == [".gitattributes", "config.json"]
    assert (result["dev_config"], result["main_config"]) == ('{"v": 2}', '{"v": 1}')
    assert result["branches"] == ["dev", "main"]
    main_history, dev_history = hub_server.commits("alice/branchy"), hub_server.commits("alice/branchy", "dev")
    assert len(main_history) == 2 and len(dev_history) == 3
    assert dev_history[1:] == main_history  # dev branched off main's head


def test_parent_commit_and_pull_requests(hub_server, tmp_path):
    folder = make_folder(tmp_path / "pr", {"proposal.txt": "please merge"})
    result = run_client(
        hub_server,
        f"""
        from huggingface_hub import CommitOperationAdd
        api.create_repo("alice/prs")
        initial = api.list_repo_commits("alice/prs")[0].commit_id
        first = api.upload_file(path_or_fileobj=b"one", path_in_repo="a.txt", repo_id="alice/prs",
                                parent_commit=initial)
        stale = failure(api.create_commit, "alice/prs", [CommitOperationAdd("b.txt", b"two")], commit_message="b",
                        parent_commit=initial)
        pr = api.upload_folder(repo_id="alice/prs", folder_path={str(folder)!r}, create_pr=True)
        refs = api.list_repo_refs("alice/prs", include_pull_requests=True)
        pr_files = api.list_repo_files("alice/prs", revision="refs/pr/1")
        report(first=first.oid, stale=stale, pr_url=pr.pr_url, prs=[r.ref for r in refs.pull_requests],
               pr_files=pr_files, main_files=api.list_repo_files("alice/prs"))
        """,
    )
    assert result["stale"] == ["HfHubHTTPError", 412]
    assert result["pr_url"] == f"{hub_server.url}/alice/prs/discussions/1"
    assert result["prs"] == ["refs/pr/1"]
    assert result["pr_files"] == [".gitattributes", "a.txt", "proposal.txt"]
    assert result["main_files"] == [".gitattributes", "a.txt"]
    assert hub_server.commits("alice/prs", "refs/pr/1")[1].sha == result["first"]


def test_missing_file_repo_and_revision(hub_server):
    result = run_client(
        hub_server,
        """
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

        def raises(error_class, function, *args, **kwargs):
            try:
                function(*args, **kwargs)
            except error_class:
                return True
            return False

        api.create_repo("alice/exists")
        report(
            file=failure(hf_hub_download, "alice/exists", "nope.txt"),
            repo=failure(hf_hub_download, "alice/does-not-exist", "config.json"),
            revision=failure(hf_hub_download, "alice/exists", ".gitattributes", revision="no-such-branch"),
            tree=failure(lambda: list(api.list_repo_tree("alice/exists", path_in_repo="no/such/folder"))),
            classes=[raises(EntryNotFoundError, hf_hub_download, "alice/exists", "nope.txt"),
                     raises(RepositoryNotFoundError, hf_hub_download, "alice/does-not-exist", "config.json"),
                     raises(RevisionNotFoundError, snapshot_download, "alice/exists", revision="nope")],
            exists=[api.repo_exists("alice/exists"), api.repo_exists("alice/does-not-exist"),
                    api.file_exists("alice/exists", ".gitattributes"), api.file_exists("alice/exists", "nope")],
        )
        """,
    )
    assert result["file"] == ["RemoteEntryNotFoundError", 404]  # a subclass of EntryNotFoundError
    assert result["repo"] == ["RepositoryNotFoundError", 404]
    assert result["revision"] == ["RevisionNotFoundError", 404]
    assert result["tree"] == ["RemoteEntryNotFoundError", 404]
    assert result["classes"] == [True, True, True]
    assert result["exists"] == [True, False, True, False]


def test_dataset_repo_and_tags(hub_server):
    result = run_client(
        hub_server,
        """
        api.create_repo("alice/table", repo_type="dataset")
        api.upload_file(path_or_fileobj=b"a,b\\n1,2\\n", path_in_repo="data.csv", repo_id="alice/table",
                        repo_type="dataset")
        api.create_tag("alice/table", tag="v1", repo_type="dataset")
        api.upload_file(path_or_fileobj=b"a,b\\n3,4\\n", path_in_repo="data.csv", repo_id="alice/table",
                        repo_type="dataset")
        def read(revision):
            return Path(hf_hub_download("alice/table", "data.csv", repo_type="dataset", revision=revision)).read_text()
        refs = api.list_repo_refs("alice/table", repo_type="dataset")
        report(v1=read("v1"), main=read("main"), tags=[t.name for t in refs.tags],
               model=failure(api.model_info, "alice/table"))
        """,
    )
    assert (result["v1"], result["main"]) == ("a,b\n1,2\n", "a,b\n3,4\n")
    assert result["tags"] == ["v1"]
    assert result["model"] == ["RepositoryNotFoundError", 404]  # a dataset is not a model
    assert len(hub_server.commits("alice/table", repo_type="dataset")) == 3
    assert hub_server.repo("alice/table") is None and hub_server.repo("alice/table", "dataset") is not None


def test_wrong_token_creates_nothing(hub_server, tmp_path):
    folder = make_folder(tmp_path / "f", {"a.txt": "a"})
    code = f"""
        report(
            create=failure(api.create_repo, "alice/stolen"),
            create_ok=failure(api.create_repo, "alice/stolen", exist_ok=True),
            whoami=failure(api.whoami),
            upload=failure(api.upload_folder, repo_id="alice/stolen", folder_path={str(folder)!r}),
        )
        """
    wrong = run_client(hub_server, code, token="hf_wrong_token")
    assert wrong["create"] == wrong["create_ok"] == ["HfHubHTTPError", 401]
    assert wrong["whoami"] == ["HfHubHTTPError", 401]
    assert wrong["upload"][1] == 401
    anonymous = run_client(hub_server, "report(create=failure(api.create_repo, 'alice/stolen'))", token=None)
    assert anonymous["create"] == ["HfHubHTTPError", 401]
    assert hub_server.repos == {}


def test_writing_to_another_namespace_is_forbidden(hub_server, tmp_path):
    folder = make_folder(tmp_path / "f", {"a.txt": "bob was here"})
    run_client(hub_server, "api.create_repo('alice/shared'); report()")
    result = run_client(
        hub_server,
        f"""
        report(
            create=failure(api.create_repo, "alice/bobs"),
            upload=failure(api.upload_folder, repo_id="alice/shared", folder_path={str(folder)!r}),
            branch=failure(api.create_branch, "alice/shared", branch="bob"),
            own=failure(api.create_repo, "bob/mine"),
            read=failure(hf_hub_download, "alice/shared", ".gitattributes"),
        )
        """,
        token=BOB,
    )
    assert result["create"] == result["upload"] == result["branch"] == ["HfHubHTTPError", 403]
    assert result["own"] == result["read"] == "ok"
    assert len(hub_server.commits("alice/shared")) == 1 and ("model", "alice/bobs") not in hub_server.repos


def test_private_repo_is_readable_by_its_owner_only(hub_server, tmp_path):
    folder = make_folder(tmp_path / "f", {"secret.txt": "for alice only"})
    code = f"""
        api.create_repo("alice/private", private=True)
        api.upload_folder(repo_id="alice/private", folder_path={str(folder)!r})
        report(text=Path(hf_hub_download("alice/private", "secret.txt")).read_text(),
               private=api.model_info("alice/private").private)
        """
    assert run_client(hub_server, code)["text"] == "for alice only"
    read = """
        report(
            download=failure(hf_hub_download, "alice/private", "secret.txt"),
            snapshot=failure(snapshot_download, "alice/private"),
            info=failure(api.model_info, "alice/private"),
            listed=[m.id for m in api.list_models(author="alice")],
        )
        """
    bob = run_client(hub_server, read, token=BOB)
    assert bob["download"] == bob["snapshot"] == bob["info"] == ["RepositoryNotFoundError", 404]
    assert bob["listed"] == []
    anonymous = run_client(hub_server, read, token=None)
    assert anonymous["download"] == anonymous["snapshot"] == anonymous["info"] == ["RepositoryNotFoundError", 401]


@pytest.fixture(scope="module")
def tiny_gpt2_folder(tmp_path_factory) -> Path:
    """A tiny standard GPT-2 and a BPE tokenizer trained offline, saved with save_pretrained."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    lines = ["the hub speaks http", "push and pull the tiny model", "weights travel as safetensors"] * 3
    bpe.train_from_iterator(lines, trainers.BpeTrainer(vocab_size=120, special_tokens=["<unk>", "<|endoftext|>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", eos_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    eos = tokenizer.eos_token_id
    config = GPT2Config(
        n_layer=1, n_embd=16, n_head=2, n_positions=32, vocab_size=len(tokenizer), bos_token_id=eos, eos_token_id=eos
    )
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_transformers_from_pretrained_round_trip(hub_server, tiny_gpt2_folder, tmp_path):
    from safetensors.torch import load_file

    run_client(
        hub_server,
        f"api.create_repo('alice/tiny-gpt2'); api.upload_folder(repo_id='alice/tiny-gpt2', "
        f"folder_path={str(tiny_gpt2_folder)!r}); report()",
    )
    out = tmp_path / "pulled.safetensors"
    result = run_client(
        hub_server,
        f"""
        from safetensors.torch import save_file
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tokenizer = AutoTokenizer.from_pretrained("alice/tiny-gpt2")
        model = AutoModelForCausalLM.from_pretrained("alice/tiny-gpt2")
        save_file({{k: v.clone() for k, v in model.state_dict().items()}}, {str(out)!r})  # tied weights: cloned
        report(ids=tokenizer("push the hub")["input_ids"], model=type(model).__name__)
        """,
    )
    from transformers import AutoTokenizer

    local_tokenizer = AutoTokenizer.from_pretrained(tiny_gpt2_folder)
    assert result["ids"] == local_tokenizer("push the hub")["input_ids"]
    assert result["model"] == "GPT2LMHeadModel"
    pulled, saved = load_file(out), load_file(tiny_gpt2_folder / "model.safetensors")
    assert set(saved) <= set(pulled)
    assert all(pulled[name].equal(tensor) for name, tensor in saved.items())
    on_hub = hub_server.files("alice/tiny-gpt2")
    local = {p.name: p.read_bytes() for p in tiny_gpt2_folder.iterdir()}
    assert {name: on_hub[name] for name in local} == local  # byte-identical files
    assert hashlib.sha256(local["model.safetensors"]).hexdigest() in hub_server.lfs_objects  # *.safetensors is LFS
