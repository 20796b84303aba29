"""The chat's HTML: markup from the corpus or an answer is escaped; marks and panels are built right."""

import re
from html.parser import HTMLParser

from assistant.chat.render import render_answer, render_error, render_sources, render_streaming
from assistant.errors import BackendError, IndexProblemError, InvalidQuestionError
from assistant.models import Answer, Citation, SentenceSupport, Source

HOSTILE = 'Fast <script>window.__pwned = 1</script> decoding <img src=x onerror="window.__pwned = 2"> wins.'


class _Tags(HTMLParser):
    """Collects every start tag and its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags(markup: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(markup)
    return parser.tags


def _answer(text: str, sentences: list[SentenceSupport], source_text: str = "A passage. " * 3,
            metadata: dict | None = None, title: str = "A Paper: On Things") -> Answer:
    source = Source(1, title, "p1", source_text, 0.0312, metadata or {}, dense=0.61)
    other = Source(2, "Another Paper", "p2", "Unrelated text.", 0.02, {})
    return Answer("q", text, False, [Citation(1, title, "p1")], [source, other], "extractive", sentences)


def test_hostile_markup_in_answer_and_sources_is_escaped() -> None:
    text = f"{HOSTILE} [1]"
    answer = _answer(text, [SentenceSupport(text, [1], 0.9, True)], source_text=HOSTILE,
                     metadata={"authors": '<img src=y onerror="alert(1)">', "links": "javascript:alert(1)"},
                     title="<svg onload=alert(1)>Bold</svg> title")
    for markup in (render_answer(answer), render_sources(answer), render_streaming(text)):
        found = tags(markup)
        assert not [t for t, _ in found if t in ("script", "img", "svg")]
        assert not [a for _, attrs in found for a in attrs if a.startswith("on")]
        assert "&lt;script&gt;" in markup
    assert "javascript:" not in render_sources(answer)


def test_low_support_sentence_is_marked_with_a_tooltip() -> None:
    good, weak = "ShadowKV stores the low-rank key cache [1].", "It also cures all diseases [1]."
    answer = _answer(f"{good} {weak}", [SentenceSupport(good, [1], 0.9, True),
                                         SentenceSupport(weak, [1], 0.21, False)])
    markup = render_answer(answer)
    low = [attrs for tag, attrs in tags(markup) if tag == "span" and attrs.get("class") == "pa-low"
           and attrs.get("title")]
    assert len(low) == 1 and "0.21" in (low[0]["title"] or "")
    assert "weakly supported" in markup.lower()  # the legend


def test_markers_become_titled_badges_and_cited_list() -> None:
    sentence = "The method stores keys [1]."
    markup = render_answer(_answer(sentence, [SentenceSupport(sentence, [1], 0.9, True)]))
    badges = [attrs for tag, attrs in tags(markup) if attrs.get("class") == "pa-cite"]
    assert badges[0].get("title") == "A Paper: On Things"
    assert "pa-refs" in markup and "A Paper: On Things" in markup


def test_sources_panel_shows_cited_first_with_evidence_and_details() -> None:
    quote = "ShadowKV stores the low-rank key cache on the GPU"
    text = f"{quote} [1]."
    answer = _answer(text, [SentenceSupport(text, [1], 0.9, True)], source_text=f"Intro. {quote}. More.",
                     metadata={"page_date": "Mar 14", "upvotes": 12, "authors": 6,
                               "links": "https://github.com/x/y http://example.org/p"})
    markup = render_sources(answer)
    assert markup.index("A Paper: On Things") < markup.index("Another Paper")
    assert f"<mark>{quote}</mark>" in markup
    for shown in ("Mar 14", "▲ 12", "6 authors", "score 0.0312", "similarity 0.61", "Also retrieved"):
        assert shown in markup
    hrefs = [attrs["href"] for tag, attrs in tags(markup) if tag == "a"]
    assert hrefs == ["https://github.com/x/y", "http://example.org/p"]


def test_ungrounded_answer_is_shown_as_unverified() -> None:
    grounded = _answer("The method stores keys [1].", [SentenceSupport("The method stores keys [1].", [1], 0.9, True)])
    assert "pa-unverified" not in render_answer(grounded)
    for text, sentences in [("4", [SentenceSupport("4", [], 0.0, False)]),              # cites nothing
                            ("[2]", [SentenceSupport("[2]", [2], 0.0, False)])]:       # a bare marker
        markup = render_answer(_answer(text, sentences))
        assert "pa-unverified" in markup and "Unverified: no cited paper backs this text" in markup


def test_refusal_looks_different_from_an_answer() -> None:
    refusal = Answer("q", "The collection doesn't answer this.", True, [], _answer("x", []).sources, "extractive")
    markup = render_answer(refusal)
    assert "pa-refusal" in markup and "pa-answer" not in markup and "pa-refs" not in markup
    assert "No paper answers" in render_sources(refusal)


def test_errors_have_readable_headings() -> None:
    assert "check the question" in render_error(InvalidQuestionError("the question is empty"))
    assert "backend failed" in render_error(BackendError("connection refused"))
    assert "index" in render_error(IndexProblemError("cannot reach the Chroma server"))
    unexpected = render_error(RuntimeError("<secret path>"))
    assert "RuntimeError" in unexpected and "secret" not in unexpected


def test_the_sources_panel_marks_what_is_quoted_without_our_lead_ins() -> None:
    """'"Title" [1]: sentence' and 'X is <clause>' quote the passage after our lead-in: that part is marked."""
    passage = ("Caches grow with length. We present ShadowKV, a system that stores the low-rank key cache. "
               "To minimize decoding latency, ShadowKV selects minimal sparse KV pairs on-the-fly.")
    lead = "ShadowKV is a system that stores the low-rank key cache [1]."
    quote = ('"A Paper: On Things" [1]: To minimize decoding latency, ShadowKV selects minimal sparse KV pairs '
             "on-the-fly [1].")
    answer = _answer(f"{lead}\n\n{quote}", [SentenceSupport(lead, [1], 1.0, True),
                                             SentenceSupport(quote, [1], 1.0, True)], source_text=passage)
    marked = re.findall(r"<mark>(.*?)</mark>", render_sources(answer))
    assert marked == ["a system that stores the low-rank key cache",
                      "To minimize decoding latency, ShadowKV selects minimal sparse KV pairs on-the-fly"]
