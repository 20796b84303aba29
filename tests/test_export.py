"""Export: an answer with its references as Markdown and BibTeX (`Answer.to_markdown()`,
`Answer.to_bibtex()`, `assistant ask --format`), checked by parsing the output with real parsers
(bibtexparser with LaTeX decoding, markdown-it)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bibtexparser
import pytest
from bibtexparser.middlewares import LatexDecodingMiddleware
from markdown_it import MarkdownIt

from assistant import Answer, Assistant, Citation, Paper, Settings
from assistant.answering.citations import REFUSAL
from assistant.corpus.parse import paper_id_for
from assistant.export import bibtex_entry
from assistant.indexing.index import PaperIndex

ROOT = Path(__file__).resolve().parents[1]
LAYERS = "Which papers shrink the KV cache by sharing it across layers?"
SHADOWKV = "How does ShadowKV cut KV-cache memory?"
OFF_TOPIC = "What is the capital of France?"
KEY = re.compile(r"^[a-z0-9]+_p[0-9a-f]{12}$")

SPECIAL = {
    "title": "Quokka: Cutting {KV} Cache by 50% with $\\alpha$-Sparse & Tiny_Models #1 ~ ^ a\\b ×²",
    "abstract": ("We present Quokka, a marsupial-inspired sparse attention scheme. Quokka halves the key-value "
                 "cache of small transformers on long inputs while keeping accuracy within one point."),
    "url": "https://arxiv.org/abs/2412.01234",
    "published": "Dec 18, 2024",
}
UNDATED = {"title": "Wombat Routing for Mixture-of-Experts Layers",
           "abstract": "Wombat routes tokens to experts by burrow depth and balances expert load without aux losses."}


def parse_bibtex(text: str) -> bibtexparser.Library:
    library = bibtexparser.parse_string(text, append_middleware=[LatexDecodingMiddleware()])
    assert library.failed_blocks == []
    return library


def fields(entry: bibtexparser.model.Entry) -> dict[str, str]:
    return {name: field.value for name, field in entry.fields_dict.items()}


@pytest.fixture(scope="module")
def special_assistant(tmp_path_factory: pytest.TempPathFactory, bundled_papers: list[Paper]) -> Assistant:
    """An index of a paper whose title holds every LaTeX special character (with a URL and a dated
    record), an undated one, and four real papers."""
    folder = tmp_path_factory.mktemp("special")
    records = [SPECIAL, UNDATED] + [{"title": p.title, "abstract": p.abstract} for p in bundled_papers[:4]]
    (folder / "special.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    settings = Settings.from_env(env={}, index_dir=folder / "index", include_bundled=False)
    PaperIndex(settings).build([folder / "special.jsonl"], progress=False)
    return Assistant(settings)


def test_bibtex_of_a_real_answer_has_one_valid_misc_entry_per_cited_paper(assistant: Assistant) -> None:
    answer = assistant.answer(LAYERS)
    assert len(answer.citations) >= 2
    library = parse_bibtex(answer.to_bibtex())
    assert [e.entry_type for e in library.entries] == ["misc"] * len(answer.citations)
    assert [fields(e)["title"] for e in library.entries] == [c.title for c in sorted(answer.citations,
                                                                                     key=lambda c: c.n)]
    for entry in library.entries:
        assert KEY.match(entry.key), entry.key
        # the bundled pages state the listing date but no year and no paper URL: nothing is invented
        assert re.fullmatch(r"Hugging Face Daily Papers, [A-Z][a-z]{2} \d{1,2}", fields(entry)["howpublished"])
        assert "year" not in fields(entry) and "url" not in fields(entry)
    assert len({e.key for e in library.entries}) == len(library.entries)


def test_bibtex_keys_are_stable_across_questions_and_processes(assistant: Assistant) -> None:
    keys = {e.key for q in (SHADOWKV, "What does ShadowKV do?")
            for e in parse_bibtex(assistant.answer(q).to_bibtex()).entries if e.key.startswith("shadowkv")}
    shadowkv = next(c for c in assistant.answer(SHADOWKV).citations if c.title.startswith("ShadowKV"))
    assert keys == {f"shadowkv_{paper_id_for(shadowkv.title)}"}  # the id is derived from the title alone


def test_special_characters_are_escaped_and_stated_year_and_url_kept(special_assistant: Assistant) -> None:
    sources = special_assistant.retrieve("How does Quokka halve the key-value cache?")
    quokka = next(s for s in sources if s.title.startswith("Quokka"))
    entry = parse_bibtex(bibtex_entry(quokka)).entries[0]
    assert set("{}%&_#~^\\") <= set(quokka.title)  # as indexed (the normaliser unwraps $\alpha$)
    # pylatexenc decodes \textasciicircum{} (LaTeX's caret) as the spacing circumflex U+02C6
    assert fields(entry)["title"].replace("ˆ", "^") == quokka.title
    assert fields(entry)["url"] == SPECIAL["url"] and fields(entry)["year"] == "2024"
    assert "howpublished" not in fields(entry)  # a JSONL record, not a Daily Papers listing
    assert entry.key == f"quokka2024_{quokka.paper_id}"

    wombat = next(s for s in special_assistant.retrieve("How does Wombat route tokens to experts?")
                  if s.title.startswith("Wombat"))
    assert fields(parse_bibtex(bibtex_entry(wombat)).entries[0]) == {"title": UNDATED["title"]}


def test_markdown_shows_the_answer_and_its_references_as_text(special_assistant: Assistant,
                                                             assistant: Assistant) -> None:
    answer = assistant.answer(LAYERS)
    markdown = answer.to_markdown()
    html = MarkdownIt().render(markdown)
    assert html.startswith(f"<h2>{LAYERS}</h2>")
    for c in answer.citations:
        assert f"[{c.n}] <strong>{c.title}</strong>. Hugging Face Daily Papers, " in html
        assert f"[{c.n}]" in markdown.split("### References")[0]
    assert "<li>" in html.split("<h3>References</h3>")[0], "the answer's list of papers stays a list"

    quokka = next(s for s in special_assistant.retrieve("How does Quokka halve the key-value cache?")
                  if s.title.startswith("Quokka"))
    cited = Answer(LAYERS, f"Quokka halves the cache [{quokka.n}].", False,
                   [Citation(quokka.n, quokka.title, quokka.paper_id)], [quokka], "extractive")
    html = MarkdownIt().render(cited.to_markdown())
    text = re.sub(r"<[^>]+>", "", html).replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    assert quokka.title in text, "no character of the title is taken as Markdown"
    assert f'<a href="{SPECIAL["url"]}">' in html and "published Dec 18, 2024" in html


def test_a_refusal_exports_its_sentence_and_no_references(assistant: Assistant) -> None:
    refusal = assistant.answer(OFF_TOPIC)
    assert refusal.refused
    assert refusal.to_bibtex() == ""
    markdown = refusal.to_markdown()
    assert f"\n{REFUSAL}\n" in markdown and "References" not in markdown


def test_answer_round_trips_through_its_dict(assistant: Assistant) -> None:
    answer = assistant.answer(SHADOWKV)
    again = Answer.from_dict(json.loads(json.dumps(answer.to_dict())))
    assert again.to_dict() == answer.to_dict()
    assert again.to_bibtex() == answer.to_bibtex() and again.to_markdown() == answer.to_markdown()


# -- the command ------------------------------------------------------------------------------------
def run_ask(index_dir: Path, cli_env: Callable[..., dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", "ask", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=cli_env(ASSISTANT_INDEX_DIR=str(index_dir)))


def test_ask_prints_each_format(index_dir: Path, first_build: object, assistant: Assistant,
                                cli_env: Callable[..., dict[str, str]]) -> None:
    expected = assistant.answer(SHADOWKV)
    bibtex = run_ask(index_dir, cli_env, SHADOWKV, "--format", "bibtex")
    assert bibtex.returncode == 0, bibtex.stderr
    assert bibtex.stdout == expected.to_bibtex()
    assert [fields(e)["title"] for e in parse_bibtex(bibtex.stdout).entries] == [c.title for c in expected.citations]

    markdown = run_ask(index_dir, cli_env, SHADOWKV, "--format", "markdown")
    assert (markdown.returncode, markdown.stdout) == (0, expected.to_markdown())

    as_json = run_ask(index_dir, cli_env, SHADOWKV, "--format", "json")
    assert json.loads(as_json.stdout)["citations"] == [vars(c) for c in expected.citations]


def test_ask_a_conversation_exports_each_answer_and_each_paper_once(
        index_dir: Path, first_build: object, cli_env: Callable[..., dict[str, str]]) -> None:
    questions = ("What is ShadowKV?", "and its speedup?")
    bibtex = run_ask(index_dir, cli_env, *questions, "--format", "bibtex")
    keys = [e.key for e in parse_bibtex(bibtex.stdout).entries]
    assert bibtex.returncode == 0 and len(keys) == len(set(keys)) and keys[0].startswith("shadowkv_")
    markdown = run_ask(index_dir, cli_env, *questions, "--format", "markdown").stdout
    assert [line for line in markdown.splitlines() if line.startswith("## ")] == [f"## {q}" for q in questions]
    assert "_Answered as: " in markdown.split("## and its speedup?")[1]  # the follow-up says what it asked


def test_ask_bibtex_of_a_refusal_is_empty_with_a_note(index_dir: Path, first_build: object,
                                                      cli_env: Callable[..., dict[str, str]]) -> None:
    done = run_ask(index_dir, cli_env, OFF_TOPIC, "--format", "bibtex")
    assert (done.returncode, done.stdout) == (0, "")
    assert done.stderr.strip() == "note: no answer cites a paper, so there is no BibTeX"


def test_ask_unknown_format_is_bad_input(index_dir: Path, cli_env: Callable[..., dict[str, str]]) -> None:
    done = run_ask(index_dir, cli_env, SHADOWKV, "--format", "docx")
    assert done.returncode == 2 and "invalid choice: 'docx'" in done.stderr and done.stdout == ""
