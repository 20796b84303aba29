"""An answer with its references, to take elsewhere: Markdown (the answer, then one line per cited
paper) and BibTeX (one `@misc` per cited paper). `Answer.to_markdown()` and `Answer.to_bibtex()`
call these.

Only what the pages and records state is written: the year when a date names one, a URL when the
paper's record has one (`url`), `howpublished` naming the Daily Papers listing and its date when a
page gave one; nothing is guessed.
"""

from __future__ import annotations

import json
import re
import unicodedata
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import Answer, Source

#: What `export` writes (`assistant ask --format`, besides plain text).
FORMATS = ("json", "markdown", "bibtex")
#: Where the bundled pages come from (named in `howpublished` when a paper has no URL).
LISTING = "Hugging Face Daily Papers"
_YEAR = re.compile(r"\b(19|20)\d{2}\b")
#: LaTeX's special characters and what stands for each in a BibTeX field.
_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "%": r"\%", "#": r"\#",
          "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}"}
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|!~])")
_MARKER = re.compile(r"\\\[(\d+)\\\]")


def cited_sources(answer: Answer) -> list[Source]:
    """The sources the answer cites, in the order of their numbers."""
    cited = {c.n for c in answer.citations}
    return sorted((s for s in answer.sources if s.n in cited), key=lambda s: s.n)


def year_of(source: Source) -> str | None:
    """The year the paper's record states (a `year` field, else a date naming one), or None."""
    meta = source.metadata
    for key in ("year", "published", "date", "page_date"):
        found = _YEAR.search(str(meta.get(key, "")))
        if found:
            return found.group()
    return None


def url_of(source: Source) -> str | None:
    """The paper's own URL when its record has one (`url` field); code links in the abstract are not it."""
    url = str(source.metadata.get("url", "")).strip()
    return url if url.startswith(("https://", "http://")) and not any(c.isspace() for c in url) else None


def listing_of(source: Source) -> str | None:
    """Where and when a Daily Papers page listed the paper ("Hugging Face Daily Papers, Apr 10"); None
    for a paper from the user's JSONL or CSV records, which state no listing."""
    date = source.metadata.get("page_date")
    return f"{LISTING}, {date}" if date else None


# -- Markdown --------------------------------------------------------------------------------------
def markdown_text(text: str) -> str:
    """Text shown literally by Markdown renderers (no emphasis, links or HTML from corpus text)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def to_markdown(answer: Answer) -> str:
    """The question, the answer with its `[n]` markers, and a reference line per cited paper."""
    body = "\n".join(_MARKER.sub(r"[\1]", markdown_text(line)) for line in answer.text.splitlines())
    lines = [f"## {markdown_text(answer.question)}", ""]
    if answer.asked_as:  # a follow-up: the question it was answered as
        lines += [f"_Answered as: {markdown_text(answer.asked_as)}_", ""]
    lines += [body, ""]
    sources = cited_sources(answer)
    if sources:
        lines += ["### References", ""]
        for s in sources:
            details = [d for d in (listing_of(s), s.metadata.get("published") and
                                   f"published {s.metadata['published']}") if d]
            url = url_of(s)
            lines.append(f"- [{s.n}] **{markdown_text(s.title)}**."
                         + (f" {markdown_text('; '.join(details))}." if details else "")
                         + (f" <{url}>" if url else ""))
        lines.append("")
    lines.append(f"_Answered by the {answer.backend} backend; confidence {answer.confidence:.2f}._")
    return "\n".join(lines) + "\n"


# -- BibTeX ----------------------------------------------------------------------------------------
def bibtex_escape(text: str) -> str:
    """Text safe inside a braced BibTeX field: LaTeX's special characters escaped, one line."""
    return "".join(_LATEX.get(ch, ch) for ch in " ".join(text.split()))


def bibtex_key(source: Source) -> str:
    """A stable, valid key: the title's first word (ASCII letters and digits), the year when known
    and the paper id, which is derived from the title, so the same paper always gets the same key."""
    ascii_title = unicodedata.normalize("NFKD", source.title).encode("ascii", "ignore").decode()
    words = re.findall(r"[A-Za-z0-9]+", ascii_title)
    first = words[0].lower()[:20] if words else "paper"
    return f"{first}{year_of(source) or ''}_{source.paper_id}"


def bibtex_entry(source: Source) -> str:
    """One `@misc` entry for a cited paper."""
    fields: list[tuple[str, str]] = [("title", "{" + bibtex_escape(source.title) + "}")]
    if year := year_of(source):
        fields.append(("year", year))
    if url := url_of(source):
        fields.append(("url", url))
    if listing := listing_of(source):
        fields.append(("howpublished", bibtex_escape(listing)))
    if source.metadata.get("published"):
        fields.append(("note", "Published " + bibtex_escape(str(source.metadata["published"]))))
    body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
    return f"@misc{{{bibtex_key(source)},\n{body}\n}}\n"


def to_bibtex(*answers: Answer) -> str:
    """One `@misc` entry per paper the answers cite, each paper once (keys must be unique in a
    file); empty when they cite nothing (refusals)."""
    papers = {s.paper_id: s for answer in answers for s in cited_sources(answer)}
    return "\n".join(bibtex_entry(s) for s in papers.values())


def export(answer: Answer, fmt: str) -> str:
    """The answer as a file's text in one of FORMATS (json: `Answer.to_dict()` on one line)."""
    if fmt == "json":
        return json.dumps(answer.to_dict(), ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return to_markdown(answer)
    if fmt == "bibtex":
        return to_bibtex(answer)
    raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
