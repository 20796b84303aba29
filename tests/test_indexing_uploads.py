"""Files added from the chat: checked (type, size, at least one paper), kept in the uploads folder
with broken lines reported by number, indexed at once, and still there after a restart and after
`assistant index --rebuild`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant import Assistant, CorpusError, Paper, Settings, cli
from assistant.indexing.index import PaperIndex
from assistant.indexing.uploads import add_upload, uploaded_files

NEW_PAPER = {"title": "QuokkaFormer: Pouch Attention for Marsupial Sequences",
             "abstract": "We present QuokkaFormer, a pouch attention model for marsupial sequences. On the Wombat "
                         "benchmark QuokkaFormer reaches 91.2% accuracy with only 7M parameters.",
             "published": "2025-02-03", "upvotes": 12}
QUESTION = "What accuracy does QuokkaFormer reach on the Wombat benchmark?"


def jsonl(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def small(tmp_path: Path, bundled_papers: list[Paper]) -> Settings:
    """Settings of an index of three real papers (the bundled pages left out)."""
    base = jsonl(tmp_path / "base.jsonl", *(json.dumps({"title": p.title, "abstract": p.abstract})
                                            for p in bundled_papers[:3]))
    settings = Settings.from_env(env={}, index_dir=tmp_path / "index", include_bundled=False)
    PaperIndex(settings).build([base], progress=False)
    return settings


def test_upload_is_kept_reported_by_line_and_answerable_at_once(small: Settings, tmp_path: Path) -> None:
    bot = Assistant(small)
    assert not bot.answer(QUESTION).grounded
    file = jsonl(tmp_path / "my papers.jsonl", json.dumps(NEW_PAPER), "{broken", "[1, 2]",
                 json.dumps({"title": "No abstract"}))
    upload = add_upload(file, small.uploads_folder)
    assert upload.path == small.uploads_folder / "my_papers.jsonl" and upload.path.read_bytes() == file.read_bytes()
    assert [p.title for p in upload.corpus.papers] == [NEW_PAPER["title"]]
    assert [line.split(":")[0] for line in upload.problem_lines()] == ["line 2", "line 3", "line 4"]
    assert "invalid JSON" in upload.problem_lines()[0] and "missing abstract" in upload.problem_lines()[2]
    bot.index.build(progress=False)
    answer = bot.answer(QUESTION)
    assert answer.citations and answer.citations[0].title == NEW_PAPER["title"] and "91.2%" in answer.text
    assert bot.answer(QUESTION, filters={"sources": ["uploads"], "since": "2025"}).citations[0].title \
        == NEW_PAPER["title"]


def test_uploads_survive_a_restart_and_a_rebuild(small: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSISTANT_INCLUDE_BUNDLED", "0")  # as the small index was built
    add_upload(jsonl(tmp_path / "new.jsonl", json.dumps(NEW_PAPER)), small.uploads_folder)
    PaperIndex(small).build(progress=False)
    assert cli.main(["index", "--rebuild", "--quiet", "--index-dir", str(small.index_dir)]) == 0
    assert "papers: 4 unique" in capsys.readouterr().out
    restarted = Assistant(small)  # a new process would open the index the same way
    assert restarted.answer(QUESTION).citations[0].title == NEW_PAPER["title"]
    assert uploaded_files(small.uploads_folder) == [small.uploads_folder / "new.jsonl"]


def test_same_name_is_numbered_not_overwritten(small: Settings, tmp_path: Path) -> None:
    file = jsonl(tmp_path / "new.jsonl", json.dumps(NEW_PAPER))
    first, second = add_upload(file, small.uploads_folder), add_upload(file, small.uploads_folder)
    assert (first.path.name, second.path.name) == ("new.jsonl", "new-2.jsonl")


@pytest.mark.parametrize(("name", "content", "words"), [
    ("paper.pdf", b"%PDF-1.7", ".pdf files cannot be added; use .csv, .jsonl"),
    ("broken.jsonl", b"{broken\n[1]\n", "holds no paper that can be read (line 1: invalid JSON"),
    ("empty.csv", b"", "holds no paper that can be read"),
    ("no-columns.csv", b"name,text\na,b\n", "header lacks column(s) abstract, title"),
])
def test_unusable_files_are_refused_and_nothing_is_kept(small: Settings, tmp_path: Path, name: str,
                                                        content: bytes, words: str) -> None:
    file = tmp_path / name
    file.write_bytes(content)
    with pytest.raises(CorpusError, match=re.escape(words)):
        add_upload(file, small.uploads_folder)
    assert uploaded_files(small.uploads_folder) == []


def test_oversized_file_is_refused(small: Settings, tmp_path: Path) -> None:
    file = tmp_path / "huge.jsonl"
    with open(file, "wb") as out:
        out.truncate(17 * 2**20)
    with pytest.raises(CorpusError, match=re.escape("huge.jsonl is 17.0 MiB; the limit is 16 MiB")):
        add_upload(file, small.uploads_folder)
    assert uploaded_files(small.uploads_folder) == []
