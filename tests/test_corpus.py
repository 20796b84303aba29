"""The corpus parser: bundled pages, user JSONL/CSV files, duplicates and malformed input."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.corpus.parse import load_corpus, normalize_title, parse_page


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
