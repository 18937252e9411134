"""Corpus sources: file kinds, folders, globs, the built-in corpus, and every bad-input error."""

import itertools
import json

import pytest
from datasets import Dataset

from hf_scratchgpt.data import sources
from hf_scratchgpt.data.sources import (
    DOCSTRING_MIN_CHARS,
    builtin_corpus_file,
    builtin_docstrings_file,
    check_text_file,
    load_documents,
    resolve_files,
    stdlib_docstrings,
)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_txt_file_is_one_document(shared_data):
    docs = load_documents(shared_data / "the-verdict.txt")
    assert len(docs) == 1 and docs[0]["text"] == (shared_data / "the-verdict.txt").read_text(encoding="utf-8")


def test_table_formats_read_their_text_field(tmp_path):
    rows = [{"body": "first doc", "n": 1}, {"body": "second doc", "n": 2}]
    _write(tmp_path / "a.jsonl", "\n".join(json.dumps(r) for r in rows))
    _write(tmp_path / "b.json", json.dumps(rows))
    _write(tmp_path / "c.csv", "body,n\nfirst doc,1\nsecond doc,2\n")
    _write(tmp_path / "d.tsv", "body\tn\nfirst doc\t1\nsecond doc\t2\n")
    Dataset.from_list(rows).to_parquet(str(tmp_path / "e.parquet"))
    for name in ("a.jsonl", "b.json", "c.csv", "d.tsv", "e.parquet"):
        docs = load_documents(tmp_path / name, text_field="body")
        assert docs.column_names == ["text"] and docs["text"] == ["first doc", "second doc"], name


def test_folders_and_globs(tmp_path):
    _write(tmp_path / "corpus" / "b.txt", "bee")
    _write(tmp_path / "corpus" / "sub" / "a.txt", "ay")
    _write(tmp_path / "corpus" / "notes.bin", "ignored")
    assert [p.name for p in resolve_files(tmp_path / "corpus")] == ["b.txt", "a.txt"]
    assert sorted(load_documents(str(tmp_path / "corpus" / "**" / "*.txt"))["text"]) == ["ay", "bee"]


def test_builtin_corpus_ships_with_python():
    path = builtin_corpus_file()
    docs = load_documents("builtin")
    assert path.is_file() and len(docs) > 50
    assert sum(len(t) for t in docs["text"]) > 300_000


def test_builtin_docstrings_are_the_standard_librarys_without_its_tests():
    path = builtin_docstrings_file()
    assert path == builtin_docstrings_file()  # written once
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(records) > 1000 and sum(len(r["text"]) for r in records) > 1_000_000
    assert all(len(r["text"]) >= DOCSTRING_MIN_CHARS for r in records)
    assert len({r["text"] for r in records}) == len(records)  # each docstring once
    assert not any(r["source"].startswith("test") or "/tests/" in r["source"] for r in records)
    assert any(r["source"] == "json/__init__.py" for r in records)
    assert records[:50] == list(itertools.islice(stdlib_docstrings(), 50))  # the order is fixed
    docs = load_documents(["builtin-docstrings"])
    assert docs["text"][:3] == [r["text"] for r in records[:3]]


def test_missing_unsupported_and_mixed_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="data source not found: .*nope.txt"):
        load_documents(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="matches no files"):
        load_documents(str(tmp_path / "*.txt"))
    _write(tmp_path / "x.docx", "x")
    with pytest.raises(ValueError, match=r"x.docx: unsupported file type '.docx'"):
        load_documents(tmp_path / "x.docx")
    _write(tmp_path / "t.txt", "text")
    _write(tmp_path / "r.jsonl", '{"text": "t"}')
    with pytest.raises(ValueError, match="cannot mix file kinds"):
        load_documents([tmp_path / "t.txt", tmp_path / "r.jsonl"])
    with pytest.raises(ValueError, match="no data sources"):
        load_documents([])


def test_empty_file_is_named(tmp_path):
    _write(tmp_path / "empty.txt", "")
    with pytest.raises(ValueError, match=r"empty.txt: file is empty"):
        load_documents(tmp_path / "empty.txt")
    _write(tmp_path / "empty.jsonl", "")
    with pytest.raises(ValueError, match=r"empty.jsonl: file is empty"):
        load_documents(tmp_path / "empty.jsonl")


@pytest.mark.parametrize("chunk", [3, 1 << 20])
def test_undecodable_bytes_name_file_and_byte_offset(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(sources, "CHUNK_BYTES", chunk)
    bad = tmp_path / "bad.txt"
    bad.write_bytes("héllo wörld".encode() + b"\xff\xfe tail")  # invalid byte at offset 13
    with pytest.raises(ValueError, match=r"bad.txt: byte offset 13: not valid UTF-8"):
        check_text_file(bad)
    cut = tmp_path / "cut.txt"
    cut.write_bytes(b"abc" + "€".encode()[:2])  # truncated 3-byte sequence at offset 3
    with pytest.raises(ValueError, match=r"cut.txt: byte offset 3"):
        load_documents(cut)
    docs = load_documents(bad, errors="replace")
    assert "\ufffd" in docs[0]["text"] and docs[0]["text"].startswith("héllo wörld")


def test_missing_text_field_and_bad_records(tmp_path):
    _write(tmp_path / "a.jsonl", '{"body": "x"}\n{"body": "y"}')
    with pytest.raises(ValueError, match=r"a.jsonl: no text field 'text'; the columns are \['body'\]"):
        load_documents(tmp_path / "a.jsonl")
    _write(tmp_path / "b.jsonl", '{"text": "x"}\n{"text": null}\n')
    with pytest.raises(ValueError, match=r"b.jsonl: record 1: field 'text' must be a string"):
        load_documents(tmp_path / "b.jsonl")
