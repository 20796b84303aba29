"""The corpus parser: bundled pages, user JSONL/CSV files, duplicates and malformed input. Bad
inputs are reported with their file and position, the rest is read, and `assistant index` says so
with exit status 3 (partial success); those tests use small files of our own
(`include_bundled=False`), so only the CLI tests embed anything, and only a few papers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from assistant import cli
from assistant.corpus.parse import MAX_FILE_BYTES, ParseProblem, load_corpus, normalize_title, parse_page
from assistant.indexing.index import PaperIndex
from assistant.settings import Settings

ABSTRACT = ("We study retrieval for long documents and show that a small reranker recovers most of the "
            "accuracy of a large one at a tenth of the cost.")


def test_bundled_pages_parse_to_333_unique_papers() -> None:
    result = load_corpus()
    assert result.files_read == 5
    assert result.entries == 392
    assert len(result.papers) == 333
    assert result.duplicates_merged == 392 - 333
    assert result.problems == []
    assert len({p.paper_id for p in result.papers}) == 333


def test_page_metadata_and_provenance_are_kept() -> None:
    papers = {p.title: p for p in load_corpus().papers}
    shadow = papers["ShadowKV: KV Cache in Shadows for High-Throughput Long-Context LLM Inference"]
    assert "https://github.com/bytedance/ShadowKV" in shadow.metadata["links"]
    assert len(shadow.provenance) == 2
    assert shadow.metadata["page_date"] == "Mar 14"
    llasa = papers["LLaSA: Large Language and E-Commerce Shopping Assistant"]
    assert llasa.metadata["authors"] == 7
    assert llasa.metadata["published"] == "Aug 4, 2024"
    assert llasa.abstract.startswith("The e-commerce platform has evolved rapidly")


def test_user_jsonl_and_csv_files_are_read_with_extra_fields(tmp_path: Path) -> None:
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text(
        json.dumps({"title": "A Study of Widgets", "abstract": "Widgets are studied.", "year": 2024,
                    "tags": ["a", "b"]}) + "\n"
        + "{not json\n"
        + json.dumps({"title": "", "abstract": "No title here."}) + "\n"
    )
    csv_file = tmp_path / "more.csv"
    csv_file.write_text("title,abstract,venue\nGadgets at Scale,We scale gadgets.,ICML\n")
    result = load_corpus([tmp_path], include_bundled=False)
    titles = {p.title: p for p in result.papers}
    assert set(titles) == {"A Study of Widgets", "Gadgets at Scale"}
    assert titles["A Study of Widgets"].metadata == {"year": 2024, "tags": ["a", "b"]}
    assert titles["Gadgets at Scale"].metadata == {"venue": "ICML"}
    where = {(Path(p.path).name, p.location) for p in result.problems}
    assert ("mine.jsonl", "2") in where and ("mine.jsonl", "3") in where


def test_csv_without_abstract_column_is_reported_not_fatal(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_text("title,summary\nX,Y\n")
    (tmp_path / "good.jsonl").write_text(json.dumps({"title": "Good", "abstract": "Fine."}) + "\n")
    result = load_corpus([tmp_path], include_bundled=False)
    assert [p.title for p in result.papers] == ["Good"]
    assert any("abstract" in p.message and p.location == "1" for p in result.problems)


def test_duplicates_across_files_merge_by_normalised_title(tmp_path: Path) -> None:
    (tmp_path / "dup.jsonl").write_text(json.dumps({
        "title": "shadowkv:  KV Cache in Shadows for High-Throughput Long-Context LLM Inference",
        "abstract": "A different copy.", "venue": "somewhere"}) + "\n")
    result = load_corpus([tmp_path])
    assert len(result.papers) == 333
    merged = next(p for p in result.papers if normalize_title(p.title).startswith("shadowkv"))
    assert any("dup.jsonl" in prov for prov in merged.provenance)
    assert merged.metadata["venue"] == "somewhere"


def test_truncated_page_reports_the_title_without_abstract() -> None:
    page = "Mar 14\n\nFirst Paper Title\n\nIts abstract is here and is long enough.\n\nDangling Title\n"
    problems: list = []
    papers = parse_page(page, "page.txt", problems)
    assert [p.title for p in papers] == ["First Paper Title"]
    assert len(problems) == 1 and problems[0].location == "7" and "without an abstract" in problems[0].message


# -- malformed input ------------------------------------------------------------------------------
def page(*papers: tuple[str, str]) -> str:
    """A Daily Papers page: boilerplate, a date, then title / abstract blocks."""
    blocks = ["Daily Papers", "Mar 14"] + [f"{t}\n\n{a}" for t, a in papers]
    return "\n\n".join(blocks) + "\n"


def jsonl(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


# Each case: file name, bytes, expected problem (location, words in the message), titles read.
CASES: dict[str, tuple[str, bytes, str, str, list[str]]] = {
    "wrong encoding": ("latin1.txt", page(("Café embeddings", ABSTRACT)).encode("latin-1"),
                       "5", "not UTF-8", ["Café embeddings"]),
    "truncated page": ("cut.txt", page(("Kept paper", ABSTRACT)).encode() + b"\nCut-off title\n",
                       "9", "title without an abstract", ["Kept paper"]),
    "cut inside a character": ("cutchar.txt", page(("Naïve paper", ABSTRACT + " é")).encode()[:-2],
                               "7", "truncated", ["Naïve paper"]),
    "broken JSONL lines": ("broken.jsonl", jsonl({"title": "First", "abstract": ABSTRACT}, '{"title": "Half',
                                                 "[1, 2]", {"title": "No abstract"},
                                                 {"title": "Last", "abstract": ABSTRACT}).encode(),
                           "2", "invalid JSON", ["First", "Last"]),
    "CSV without the columns": ("nocols.csv", b"name,summary\nA,B\n", "1", "lacks column(s) abstract, title", []),
    "field Chroma cannot store": ("fields.jsonl", jsonl({"title": "Fields", "abstract": ABSTRACT, "": "x",
                                                         "chroma:document": "y", "year": 2024}).encode(),
                                  "1", "'', 'chroma:document' ignored", ["Fields"]),
    "binary file": ("blob.jsonl", b"\x00\x01\x02" * 100, "", "binary file", []),
    "empty file": ("empty.jsonl", b"", "", "no papers found", []),
}


def problems_for(problems: list[ParseProblem], path: Path) -> list[ParseProblem]:
    return [p for p in problems if p.path == str(path)]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_file_is_reported_with_its_position(tmp_path: Path, case: str) -> None:
    name, data, location, words, titles = CASES[case]
    path = tmp_path / name
    path.write_bytes(data)
    load = load_corpus([path], include_bundled=False)
    found = problems_for(load.problems, path)
    assert found, load.problems
    assert found[0].location == location and words in found[0].message, found
    assert sorted(p.title for p in load.papers) == sorted(titles)


def test_control_characters_and_terminal_escapes_are_stripped(tmp_path: Path) -> None:
    path = tmp_path / "escapes.jsonl"
    path.write_text(jsonl({"title": "Bell\x07 and \x1b[31mred\x1b[0m",
                           "abstract": ABSTRACT + "\x1b]0;pwned\x07\x9b2J"}))
    (paper,) = load_corpus([path], include_bundled=False).papers
    text = paper.title + paper.abstract
    assert not any(ord(ch) < 32 or 127 <= ord(ch) < 160 for ch in text), repr(text)
    assert paper.title == "Bell and [31mred [0m"


def test_over_the_size_limit_is_skipped_without_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    with open(path, "wb") as f:
        f.truncate(50 * 2**20)  # 50 MB (sparse: nothing is written, nothing should be read)
    (problem,) = load_corpus([path], include_bundled=False).problems
    assert problem.path == str(path) and f"over the {MAX_FILE_BYTES // 2**20} MiB limit" in problem.message


def test_paths_that_cannot_be_read_are_reported_and_the_rest_is_read(tmp_path: Path) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl({"title": "Good paper", "abstract": ABSTRACT}))
    (tmp_path / "empty").mkdir()
    loops = tmp_path / "loops"
    loops.mkdir()
    (loops / "again").symlink_to(loops)            # a folder loop
    (loops / "self.jsonl").symlink_to("self.jsonl")  # a file link to itself
    (tmp_path / "selflink").symlink_to("selflink")
    (tmp_path / "dangling.csv").symlink_to(tmp_path / "nowhere.csv")
    os.mkfifo(tmp_path / "pipe.jsonl")                # reading it would block forever
    missing = tmp_path / "missing"
    inputs = [good, tmp_path / "empty", loops, tmp_path / "selflink", tmp_path / "dangling.csv",
              tmp_path / "pipe.jsonl", missing, tmp_path / "notes.pdf"]
    (tmp_path / "notes.pdf").write_bytes(b"%PDF-1.4")

    load = load_corpus(inputs, include_bundled=False)

    assert [p.title for p in load.papers] == ["Good paper"]
    said = {(Path(p.path).name, p.message.split(";")[0]) for p in load.problems}
    assert said >= {
        ("empty", "folder holds no .csv, .jsonl, .md, .ndjson, .page, .txt files"),
        ("again", "folder already visited (symbolic link loop)"),
        ("self.jsonl", "cannot read: Too many levels of symbolic links"),
        ("selflink", "symbolic link loop"),
        ("dangling.csv", "broken symbolic link"),
        ("pipe.jsonl", "not a regular file or folder"),
        ("missing", "no such file or folder"),
        ("notes.pdf", "unsupported file type .pdf"),
    }, said


# -- through `assistant index` --------------------------------------------------------------------
@pytest.fixture
def run_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """`assistant index --quiet ARGS` in this process on an index of our own files only."""
    monkeypatch.setenv("ASSISTANT_INCLUDE_BUNDLED", "0")

    def run(*args: str | Path) -> tuple[int, str, str]:
        code = cli.main(["index", "--quiet", "--index-dir", str(tmp_path / "index"), *map(str, args)])
        out, err = capsys.readouterr()
        return code, out, err
    return run


def stored_titles(index_dir: Path) -> set[str]:
    store = PaperIndex(Settings.from_env(env={}, index_dir=index_dir)).store
    return {m["title"] for m in store.collection.get(include=["metadatas"])["metadatas"]}


def test_cli_index_reports_each_problem_and_exits_3(tmp_path: Path, run_index: Callable) -> None:
    folder = tmp_path / "inputs"
    folder.mkdir()
    for name, data, *_ in CASES.values():
        (folder / name).write_bytes(data)
    code, out, err = run_index(folder, tmp_path / "missing.jsonl")
    assert code == cli.EXIT_PARTIAL, err
    for name, _, location, words, _ in CASES.values():
        where = f"{folder / name}:{location}" if location else str(folder / name)
        assert any(line.strip().startswith(where) and words in line for line in out.splitlines()), (name, out)
    assert f"{tmp_path / 'missing.jsonl'}: no such file or folder" in out
    expected = {t for *_, titles in CASES.values() for t in titles}
    assert stored_titles(tmp_path / "index") == expected


def test_cli_index_with_nothing_readable_exits_2_and_keeps_the_index(tmp_path: Path, run_index: Callable) -> None:
    code, out, err = run_index(tmp_path / "nope.jsonl")
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err.startswith("error: no papers to index") and f"{tmp_path / 'nope.jsonl'}: no such file" in err
    good = tmp_path / "good.jsonl"
    good.write_text(jsonl({"title": "Good paper", "abstract": ABSTRACT}))
    assert run_index(good)[0] == 0
    good.unlink()
    code, out, err = run_index()
    assert code == cli.EXIT_BAD_INPUT and out == ""
    assert err.startswith("error: no papers to index; the index is unchanged") and err.count("\n") == 1, err
    assert stored_titles(tmp_path / "index") == {"Good paper"}


def test_vanished_source_is_forgotten_and_its_papers_leave(tmp_path: Path, run_index: Callable) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(jsonl({"title": "Paper A", "abstract": ABSTRACT}))
    b.write_text(jsonl({"title": "Paper B", "abstract": ABSTRACT.replace("small", "tiny")}))
    assert run_index(a, b)[0] == 0
    b.unlink()
    code, out, _ = run_index()
    assert code == cli.EXIT_PARTIAL and f"{b}: added by an earlier run but gone now" in out
    assert stored_titles(tmp_path / "index") == {"Paper A"}
    code, out, _ = run_index()
    assert code == 0 and str(b) not in out
