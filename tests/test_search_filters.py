"""Filters on a real index: published and listed date ranges, upvotes and source files narrow the
papers searched; papers without a (full) date are left out of date filters and counted; a filter
nothing matches is a plain refusal; date phrases in questions; large selections over-fetch."""

from __future__ import annotations

import csv
import json
import time
from datetime import date

import pytest

from assistant import Assistant, InvalidQuestionError, Paper, PaperFilter, Settings
from assistant.indexing.catalog import PaperCatalog, paper_date, source_files, upvote_count
from assistant.indexing.index import PaperIndex
from assistant.search import dense, keyword

QUESTION = "What does this work propose and how well does it do?"
SHADOWKV = "How does ShadowKV cut KV-cache memory?"

#: Paper number → (published, upvotes) in dated.jsonl (None: the field is absent).
JSONL_FACTS = {0: ("2024-12-18", 30), 1: ("2024-03-02", 4), 2: ("2023-07-05", None), 3: (None, 50),
               4: ("Mar 14", 7)}
#: Paper number → (published, upvotes) in more.csv ("" is an empty cell).
CSV_FACTS = {5: ("Jan 8, 2024", "12"), 6: ("", "")}
#: Paper 7 is on a saved page listed "Dec 29, 2024", published "Dec 25, 2024", 9 upvotes.
PAGE = "Daily Papers\n\nDec 29, 2024\n\n{title}\n\n{abstract}\n\n• 3 authors\n·\nDec 25, 2024 9\n"


@pytest.fixture(scope="module")
def papers(bundled_papers: list[Paper]) -> list[Paper]:
    return bundled_papers[:8]


@pytest.fixture(scope="module")
def dated(tmp_path_factory: pytest.TempPathFactory, papers: list[Paper]) -> Assistant:
    """An index of 8 real papers with known dates and upvotes, in a JSONL, a CSV and a page file."""
    folder = tmp_path_factory.mktemp("dated")
    with open(folder / "dated.jsonl", "w", encoding="utf-8") as out:
        for n, (published, upvotes) in JSONL_FACTS.items():
            record = {"title": papers[n].title, "abstract": papers[n].abstract, "published": published,
                      "upvotes": upvotes}
            out.write(json.dumps({k: v for k, v in record.items() if v is not None}) + "\n")
    with open(folder / "more.csv", "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["title", "abstract", "published", "upvotes"])
        for n, (published, upvotes) in CSV_FACTS.items():
            writer.writerow([papers[n].title, papers[n].abstract, published, upvotes])
    (folder / "page.txt").write_text(PAGE.format(title=papers[7].title, abstract=papers[7].abstract))
    settings = Settings.from_env(env={}, index_dir=folder / "index", include_bundled=False)
    PaperIndex(settings).build([folder / "dated.jsonl", folder / "more.csv", folder / "page.txt"], progress=False)
    return Assistant(settings)


def titles(papers: list[Paper], *numbers: int) -> set[str]:
    return {papers[n].title for n in numbers}


@pytest.mark.parametrize(("filters", "expected", "undated"), [
    ({"since": "2024-01-01"}, (0, 1, 5, 7), 3),                  # "Mar 14" has no year: undated like no date
    ({"since": "2024"}, (0, 1, 5, 7), 3),
    ({"until": "2023"}, (2,), 3),
    ({"since": "2024-03", "until": "2024-12-20"}, (0, 1), 3),
    ({"min_upvotes": 10}, (0, 3, 5), 0),                          # CSV's "12" counts as 12
    ({"sources": ["more.csv"]}, (5, 6), 0),
    ({"sources": "page"}, (7,), 0),
    ({"listed_since": "2024-12-29"}, (7,), 7),                    # only the page lists a date
    ({"since": "2024", "min_upvotes": 10}, (0, 5), 1),           # paper 3 has the upvotes, not a date
], ids=["since-day", "since-year", "until-year", "range-months", "upvotes", "csv-file", "page-file", "listed",
        "combined"])
def test_filters_search_exactly_the_matching_papers(dated: Assistant, papers: list[Paper], filters: dict,
                                                    expected: tuple[int, ...], undated: int) -> None:
    answer = dated.answer(QUESTION, top_k=8, filters=filters)
    assert {s.title for s in answer.sources} == titles(papers, *expected)
    assert {c.title for c in answer.citations} <= titles(papers, *expected)
    assert answer.filters["matching_papers"] == len(expected)
    assert f"{len(expected)} of 8 papers match" in answer.filters["note"]
    assert (f"{undated} paper" in answer.filters["note"]) == bool(undated)
    assert answer.to_dict()["filters"]["applied"] == PaperFilter.parse(filters).to_dict()


def test_without_filters_every_paper_can_be_found(dated: Assistant, papers: list[Paper]) -> None:
    answer = dated.answer(QUESTION, top_k=8)
    assert {s.title for s in answer.sources} == titles(papers, *range(8))
    assert answer.filters == {} and answer.to_dict()["filters"] == {}


@pytest.mark.parametrize("filters", [{"since": "2025-01-01"}, {"min_upvotes": 1000}, {"sources": ["nowhere"]},
                                     {"listed_until": "2024-01-01"}])
def test_a_filter_nothing_matches_is_a_plain_refusal(dated: Assistant, filters: dict) -> None:
    answer = dated.answer(QUESTION, filters=filters)
    assert answer.refused and not answer.grounded
    assert answer.citations == [] and answer.sources == []
    assert answer.text.startswith("No paper matches the filters")
    assert PaperFilter.parse(filters).describe() in answer.text
    assert answer.filters["matching_papers"] == 0


def test_a_question_date_phrase_becomes_a_filter_and_is_named(dated: Assistant, papers: list[Paper]) -> None:
    answer = dated.answer("What do papers since December 2024 propose?", top_k=8)
    assert {s.title for s in answer.sources} == titles(papers, 0, 7)
    assert answer.filters["understood_from"] == "since December 2024"
    assert "understood from “since December 2024”" in answer.filters["note"]
    assert answer.question == "What do papers since December 2024 propose?"
    # an explicit range wins over the question's phrase
    explicit = dated.answer("What do papers since December 2024 propose?", top_k=8, filters={"until": "2023"})
    assert {s.title for s in explicit.sources} == titles(papers, 2)
    assert explicit.filters["understood_from"] is None


@pytest.mark.parametrize(("question", "since", "until", "rest"), [
    ("Which papers since December 2024 cut KV cache?", date(2024, 12, 1), None, "Which papers cut KV cache?"),
    ("What was published in 2023 about MoE?", date(2023, 1, 1), date(2023, 12, 31), "What was published about MoE?"),
    ("papers from March 2024 on RL", date(2024, 3, 1), date(2024, 3, 31), "papers on RL"),
    ("before 2024, how was decoding sped up?", None, date(2023, 12, 31), "how was decoding sped up?"),
    ("LLM serving after Sept 2024", date(2024, 10, 1), None, "LLM serving"),
])
def test_date_phrases(question: str, since: date | None, until: date | None, rest: str) -> None:
    understood, searched = PaperFilter().with_question_dates(question)
    assert (understood.since, understood.until, searched) == (since, until, rest)


def test_a_year_that_is_not_about_papers_is_left_alone() -> None:
    question = "who won the world cup in 2018"
    assert PaperFilter().with_question_dates(question) == (PaperFilter(), question)


@pytest.mark.parametrize(("filters", "words"), [
    ({"since": "2024-13"}, "since '2024-13' is not a real date"),
    ({"until": "yesterday"}, "until must be a date like 2024-12-01"),
    ({"since": "2024-06", "until": "2024-05"}, "since 2024-06-01 is after the end of the range"),
    ({"min_upvotes": -1}, "min_upvotes must be a whole number"),
    ({"min_upvotes": "5"}, "min_upvotes must be a whole number"),
    ({"sources": [""]}, "sources must be file names"),
    ({"date": "2024"}, "unknown filter(s) 'date'"),
    ("2024", "filters must be a mapping"),
])
def test_bad_filters_are_clear_errors_before_any_search(dated: Assistant, filters: object, words: str) -> None:
    with pytest.raises(InvalidQuestionError) as exc:
        dated.answer(QUESTION, filters=filters)  # type: ignore[arg-type]
    assert words in str(exc.value)


def test_until_a_month_takes_its_last_day() -> None:
    assert PaperFilter.parse({"until": "2024-02"}).until == date(2024, 2, 29)
    assert PaperFilter.parse({"since": "2024-02"}).since == date(2024, 2, 1)
    assert PaperFilter.parse({"since": " ", "sources": "x.csv"}) == PaperFilter(sources=("x.csv",))


@pytest.mark.parametrize(("value", "expected"), [
    ("Dec 18, 2024", date(2024, 12, 18)), ("December 18, 2024", date(2024, 12, 18)),
    ("2024-12-18", date(2024, 12, 18)), ("2024-12-18T09:30:00Z", date(2024, 12, 18)),
    ("Mar 14", None), ("", None), (None, None), ("2024-02-30", None), ("soon", None),
])
def test_paper_dates(value: object, expected: date | None) -> None:
    assert paper_date(value) == expected


def test_upvote_counts() -> None:
    assert [upvote_count(v) for v in (12, "12", "3.0", "", None, "many", -2, True)] == [12, 12, 3, None, None,
                                                                                       None, None, None]


# -- the session index: large selections over-fetch, small ones are scored exactly ----------------
def test_over_fetched_and_exact_search_keep_to_the_selection(assistant: Assistant,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    shadowkv_file = source_files(assistant.answer(SHADOWKV).sources[0].metadata["pages"])[-1]
    exact = assistant.answer(SHADOWKV, top_k=8, filters={"sources": [shadowkv_file]})
    monkeypatch.setattr(dense, "EXACT_CHUNKS", 0)  # the paths a large selection takes
    monkeypatch.setattr(keyword, "FILTERED_PAPERS", 0)
    fetched = assistant.answer(SHADOWKV, top_k=8, filters={"sources": [shadowkv_file]})
    for answer in (exact, fetched):
        assert answer.sources and all(shadowkv_file in s.metadata["pages"] for s in answer.sources)
        assert answer.citations[0].title.startswith("ShadowKV")
    assert exact.sources[0].title == fetched.sources[0].title


def test_keyword_search_within_papers_ranks_them_as_the_whole_search_does(assistant: Assistant) -> None:
    """The paper ids filter the BM25 query itself: the same chunks, scores and order as the
    unfiltered ranking kept to those papers, and nothing else."""
    engine = assistant.index.keyword()
    everything = engine.search("kv cache compression for long context", 200)
    chosen = list(dict.fromkeys(hit.paper_id for hit in everything))[3:7]
    within = engine.search("kv cache compression for long context", 10, paper_ids=chosen)
    kept = [hit for hit in everything if hit.paper_id in chosen][:10]
    assert within and {hit.paper_id for hit in within} <= set(chosen)
    assert [(h.chunk_id, round(h.score, 6)) for h in within] == [(h.chunk_id, round(h.score, 6)) for h in kept]


def test_selecting_among_100k_papers_takes_milliseconds() -> None:
    rows = ((f"c{i}", {"paper_id": f"p{i}", "published": f"2024-{i % 12 + 1:02d}-{i % 28 + 1:02d}",
                       "page_date": f"Mar {i % 28 + 1}, 2025", "upvotes": i % 40,
                       "pages": f"page-{i // 50}.txt:{i % 50}"}) for i in range(100_000))
    catalog = PaperCatalog.from_metadata(rows, "fp")
    broad = PaperFilter.parse({"since": "2024-02", "min_upvotes": 3})
    narrow = PaperFilter.parse({"sources": ["page-42.txt", "page-7.txt"], "listed_since": "2025-03-20"})
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        selected = broad.select(catalog), narrow.select(catalog)
        timings.append(time.perf_counter() - started)
    assert selected[0].papers == sum(1 for i in range(100_000) if i % 12 >= 1 and i % 40 >= 3)
    assert selected[1].papers == sum(1 for i in [*range(350, 400), *range(2100, 2150)] if i % 28 + 1 >= 20)
    assert sorted(timings)[2] < 0.1, timings


def test_the_catalog_is_saved_by_the_run_and_made_again_from_the_store_when_missing(dated: Assistant) -> None:
    path, fingerprint = dated.index.catalog_path, dated.index.store.fingerprint()
    saved = PaperCatalog.load(path, fingerprint)
    assert saved is not None and len(saved) == 8
    assert PaperCatalog.load(path, "another index version") is None
    path.unlink()
    made = PaperIndex(dated.settings).catalog()  # as a new process would: from the stored metadata

    def facts(catalog: PaperCatalog) -> list[tuple]:
        return sorted((f.paper_id, f.listed, f.published, f.upvotes, f.files, sorted(f.chunk_ids))
                      for f in catalog.facts)
    assert facts(made) == facts(saved)
    assert PaperCatalog.load(path, fingerprint) is not None  # and saved for the next one
