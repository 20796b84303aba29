"""HTML for the chat: answer bubbles, refusals, errors and the sources panel.

Every piece of text that comes from the corpus, the question or a backend is escaped with
`html.escape` before it is placed in markup, so markup inside abstracts or answers shows as
text and never runs. Only the tags written here (with fixed class names) reach the browser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from urllib.parse import urlparse

from ..answering.citations import MARKER, marker_numbers, markers, quoted_span
from ..errors import AssistantError, BackendError, IndexProblemError, InvalidQuestionError
from ..models import Answer, SentenceSupport, Source

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
MAX_AUTHORS_CHARS = 160

LOW_SUPPORT_HELP = "Weakly supported: the cited passage does not clearly back this sentence"

SOURCES_EMPTY = (
    '<div class="pa-sources pa-empty"><h3>Sources</h3>'
    "<p>Ask a question: the papers behind the answer appear here, each with the passage it was "
    "quoted from, its date, upvotes, links and retrieval score.</p></div>"
)
SOURCES_PENDING = '<div class="pa-sources pa-empty"><h3>Sources</h3><p>Searching the papers…</p></div>'


def esc(value: object) -> str:
    """Text made safe for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _badges(escaped: str, titles: dict[int, str]) -> str:
    """Turn `[1, 2]` markers inside already-escaped text into styled, titled badges."""

    def one(n: int) -> str:
        title = titles.get(n)
        tip = f' title="{esc(title)}"' if title else ""
        return f'<span class="pa-cite"{tip}>[{n}]</span>'

    return MARKER.sub(lambda m: "".join(one(n) for n in marker_numbers(m.group(1))), escaped)


def _lines_to_blocks(lines: Iterable[str]) -> str:
    """Paragraphs and bullet lists from lines of inline HTML (bullets keep their own list)."""
    out: list[str] = []
    items: list[str] = []
    for line in lines:
        bullet = _BULLET.match(line)
        if bullet:
            items.append(f"<li>{line[bullet.end():]}</li>")
            continue
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items = []
        if line.strip():
            out.append(f"<p>{line.strip()}</p>")
    if items:
        out.append("<ul>" + "".join(items) + "</ul>")
    return "".join(out)


def _mark_sentences(text: str, sentences: list[SentenceSupport], titles: dict[int, str]) -> str:
    """The answer as HTML, with weakly supported sentences wrapped in a `pa-low` span."""
    pieces: list[str] = []
    cursor = 0
    for sentence in sentences:
        start = text.find(sentence.text, cursor)
        if start < 0:
            continue
        pieces.append(_badges(esc(text[cursor:start]), titles))
        body = _badges(esc(sentence.text), titles)
        if not sentence.supported:
            tip = f"{LOW_SUPPORT_HELP} (support {sentence.support:.2f})."
            body = f'<span class="pa-low" title="{esc(tip)}">{body}</span>'
        pieces.append(body)
        cursor = start + len(sentence.text)
    pieces.append(_badges(esc(text[cursor:]), titles))
    return _lines_to_blocks("".join(pieces).split("\n"))


def _one_line(parts: Iterable[str]) -> str:
    """Join markup without newlines: the chatbot then treats it as one HTML block, not Markdown."""
    return "".join(parts).replace("\n", " ")


def render_pending() -> str:
    """The bubble shown while the papers are searched."""
    return _one_line([
        '<div class="pa-msg pa-pending"><p><span class="pa-dot"></span>Searching the papers…</p>',
        "</div>",
    ])


def render_streaming(text: str) -> str:
    """The bubble while an answer streams in: the text so far, markers styled, no support marks yet."""
    body = _lines_to_blocks(_badges(esc(text), {}).split("\n"))
    return _one_line(['<div class="pa-msg pa-streaming">', body, "</div>"])


def render_answer(answer: Answer) -> str:
    """The final bubble: an answer with cited titles and support marks, or a refusal."""
    if answer.refused:
        return render_refusal(answer)
    titles = {s.n: s.title for s in answer.sources}
    body = _mark_sentences(answer.text, answer.sentences, titles)
    cited = sorted(answer.citations, key=lambda c: c.n)
    refs = "".join(f'<li><span class="pa-cite">[{c.n}]</span> {esc(c.title)}</li>' for c in cited)
    parts = ['<div class="pa-msg pa-answer">', _filter_note(answer), body]
    if not answer.grounded:  # text no cited passage backs is never shown as a grounded answer
        parts = ['<div class="pa-msg pa-answer pa-unverified"><p class="pa-unverified-head">'
                 "Unverified: no cited paper backs this text</p>", _filter_note(answer), body]
    if refs:
        parts.append(f'<ol class="pa-refs" aria-label="Cited papers">{refs}</ol>')
    if any(not s.supported for s in answer.sentences):
        parts.append(
            '<p class="pa-legend"><span class="pa-low">Dotted underline</span>: '
            "weakly supported by the cited passage (hover for the score).</p>"
        )
    parts.extend(f'<p class="pa-warning">Note: {esc(w)}</p>' for w in answer.warnings)
    parts += [_meta_line(answer), _follow_up(answer), "</div>"]
    return _one_line(parts)


def render_refusal(answer: Answer) -> str:
    """A refusal: set apart from answers, with what to try next."""
    searched = len(answer.sources)
    hint = (f"None of the {searched} closest papers backs an answer; they are listed under Sources. "
            if searched else "")
    return _one_line([
        '<div class="pa-msg pa-refusal"><p class="pa-refusal-head">Not answered by the collection</p>',
        _filter_note(answer), f"<p>{esc(answer.text)}</p>",
        f'<p class="pa-hint">{hint}Try naming the paper or method, or rephrase the question.</p>',
        _meta_line(answer), _follow_up(answer), "</div>",
    ])


_ERROR_HEADS: list[tuple[type[AssistantError], str, str]] = [
    (InvalidQuestionError, "Please check the question", ""),
    (BackendError, "The answering backend failed", "Pick another backend above, or try again later."),
    (IndexProblemError, "The paper index has a problem",
     "Rebuild it with <code>assistant index --rebuild</code>, then ask again."),
]


def render_error(error: Exception) -> str:
    """A readable error bubble; the chat keeps working after it."""
    head, hint = "Something went wrong", "The details are in the server log."
    for kind, kind_head, kind_hint in _ERROR_HEADS:
        if isinstance(error, kind):
            head, hint = kind_head, kind_hint
            break
    message = str(error) if isinstance(error, AssistantError) else type(error).__name__
    return _one_line([
        f'<div class="pa-msg pa-error" role="alert"><p class="pa-error-head">{esc(head)}</p>',
        f"<p>{esc(message)}</p>", f'<p class="pa-hint">{hint}</p>' if hint else "", "</div>",
    ])


def _filter_note(answer: Answer) -> str:
    """Which papers the filters left to search (when none, the answer's own text says so)."""
    if not answer.filters.get("matching_papers"):
        return ""
    return f'<p class="pa-filter">{esc(answer.filters["note"])}</p>'


def render_upload(message: str, problems: Sequence[str] = (), *, state: str = "done") -> str:
    """The upload status: working, done (with the lines skipped) or failed."""
    items = "".join(f"<li>{esc(p)}</li>" for p in problems)
    skipped = f'<details class="pa-skipped"><summary>{len(problems)} skipped</summary><ul>{items}</ul></details>'
    return _one_line([f'<div class="pa-upload pa-upload-{state}" role="status"><p>{esc(message)}</p>',
                      skipped if problems else "", "</div>"])


def follow_up_note(answer: Answer) -> str | None:
    """How a follow-up was answered: about which of the previous answer's papers, and as what question."""
    about = [s for s in answer.sources if s.paper_id in set(answer.about)]
    if len(about) == 1:
        where = f"About [{about[0].n}] {about[0].title}"
    elif about:
        where = f"About the {len(about)} papers of the previous answer"
    else:
        where = ""
    asked = f"asked as “{answer.asked_as}”" if answer.asked_as else ""
    note = " · ".join(bit for bit in (where, asked) if bit)
    return note[:1].upper() + note[1:] if note else None


def _follow_up(answer: Answer) -> str:
    note = follow_up_note(answer)
    if not note:
        return ""
    return (f'<p class="pa-asked" title="A follow-up is answered about the papers of the previous answer">'
            f"{esc(note)}</p>")


def _meta_line(answer: Answer) -> str:
    searched = len(answer.sources)
    bits = [f"{esc(answer.backend)} backend", f"{searched} paper{'' if searched == 1 else 's'} searched"]
    total = answer.timings_ms.get("total")
    if total is not None:
        bits.append(f"{total / 1000:.1f} s" if total >= 100 else f"{total:.0f} ms")
    return f'<p class="pa-meta">{" · ".join(bits)}</p>'


# -- sources panel -----------------------------------------------------------------------------

def render_sources(answer: Answer) -> str:
    """The sources panel: cited papers first (with evidence and details), then the rest."""
    cited = {c.n for c in answer.citations}
    quoted = _quoted_by_source(answer.sentences, answer.sources)
    first = [s for s in answer.sources if s.n in cited]
    rest = [s for s in answer.sources if s.n not in cited]
    if answer.refused:
        head = "<h3>Sources</h3><p class=\"pa-note\">No paper answers this question.</p>"
    else:
        head = f"<h3>Sources</h3><p class=\"pa-note\">{len(first)} cited of {len(answer.sources)} retrieved.</p>"
    parts = ['<div class="pa-sources">', head]
    parts += [_source_card(s, quoted.get(s.n, []), cited=True) for s in first]
    if rest:
        label = "Closest papers" if answer.refused else "Also retrieved, not cited"
        cards = "".join(_source_card(s, [], cited=False) for s in rest)
        parts.append(f'<details class="pa-rest"><summary>{label} ({len(rest)})</summary>{cards}</details>')
    parts.append(
        '<p class="pa-legend"><b>Score</b>: rank fusion of semantic and keyword search (higher is better); '
        "<b>similarity</b>: cosine between question and passage.</p></div>"
    )
    return _one_line(parts)


def _quoted_by_source(sentences: list[SentenceSupport], sources: Sequence[Source]) -> dict[int, list[str]]:
    """For each source number, what the answer quotes from it: each citing sentence without its
    markers and our lead-in ('"Title":', 'ShadowKV is …')."""
    by_n = {s.n: s for s in sources}
    out: dict[int, list[str]] = {}
    for sentence in sentences:
        plain = MARKER.sub("", sentence.text).strip()
        for n in sentence.cites or markers(sentence.text):
            span = quoted_span(plain, [by_n[n]]) if n in by_n else None
            out.setdefault(n, []).append(span or plain.rstrip(".").strip())
    return out


def _highlight(passage: str, quotes: list[str]) -> str:
    """The escaped passage with the quoted sentences wrapped in <mark>."""
    spans = []
    for quote in quotes:
        if len(quote) >= 20:
            start = passage.find(quote)
            if start >= 0:
                spans.append((start, start + len(quote)))
    out, cursor = [], 0
    for start, end in sorted(spans):
        if start < cursor:
            continue
        out += [esc(passage[cursor:start]), f"<mark>{esc(passage[start:end])}</mark>"]
        cursor = end
    out.append(esc(passage[cursor:]))
    return "".join(out)


def _source_card(source: Source, quotes: list[str], *, cited: bool) -> str:
    cls = "pa-src pa-cited" if cited else "pa-src"
    evidence = _highlight(source.text, quotes)
    return _one_line([
        f'<article class="{cls}" id="pa-src-{source.n}" data-n="{source.n}">',
        f'<header><span class="pa-cite">[{source.n}]</span> <span class="pa-title">{esc(source.title)}</span></header>',
        _details_line(source),
        f'<blockquote class="pa-evidence">{evidence}</blockquote>',
        _links(source.metadata.get("links")),
        "</article>",
    ])


def _details_line(source: Source) -> str:
    meta = source.metadata
    bits = []
    if meta.get("published"):
        bits.append(f"published {esc(meta['published'])}")
    if meta.get("page_date"):
        bits.append(f"listed {esc(meta['page_date'])}")
    if meta.get("upvotes") not in (None, ""):
        bits.append(f'<span title="upvotes">▲ {esc(meta["upvotes"])}</span>')
    authors = meta.get("authors")
    if isinstance(authors, int):
        bits.append(f"{authors} author{'s' if authors != 1 else ''}")
    elif authors:
        text = str(authors)
        short = text if len(text) <= MAX_AUTHORS_CHARS else text[:MAX_AUTHORS_CHARS].rstrip() + "…"
        bits.append(f'<span title="{esc(text)}">{esc(short)}</span>')
    pages = [p for p in str(meta.get("pages") or "").split("; ") if p]
    if len(pages) > 1:
        bits.append(f'<span title="{esc(", ".join(pages))}">seen on {len(pages)} pages</span>')
    score = f'<span class="pa-score" title="rank-fusion score">score {source.score:.4f}</span>'
    score += f' <span class="pa-score" title="semantic similarity">similarity {source.dense:.2f}</span>'
    bits.append(score)
    return f'<div class="pa-details">{" · ".join(bits)}</div>'


def _links(raw: object) -> str:
    urls = raw if isinstance(raw, list) else str(raw or "").split()
    safe = [u for u in urls if urlparse(str(u)).scheme in ("http", "https") and urlparse(str(u)).netloc]
    if not safe:
        return ""
    items = "".join(
        f'<a href="{esc(u)}" target="_blank" rel="noopener noreferrer">{esc(_short_url(str(u)))}</a>'
        for u in dict.fromkeys(map(str, safe))
    )
    return f'<div class="pa-links">{items}</div>'


def _short_url(url: str) -> str:
    parsed = urlparse(url)
    text = parsed.netloc.removeprefix("www.") + parsed.path.rstrip("/")
    return text if len(text) <= 60 else text[:57] + "…"
