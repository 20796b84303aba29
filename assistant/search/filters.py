"""Filters on a question: published and listed date ranges, minimum upvotes, source files.

`PaperFilter.parse` reads them from code, the CLI and the chat (dates as `2024-12-01`, `2024-12`
or `2024`; `since` takes the first day of the period, `until` the last); `from_question`
understands simple date phrases in a question ("since December 2024", "before 2024", "in March
2024"). `PaperFilter.select` turns a filter into the papers it allows (see `indexing/catalog.py`),
which search then keeps its hits to.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, timedelta
from typing import Any

from ..errors import InvalidQuestionError
from ..indexing.catalog import DateRange, PaperCatalog, Selection

_BOUND = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
_MONTHS = {name.casefold(): number for number, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.casefold(): number for number, name in enumerate(calendar.month_abbr) if name})
_MONTHS["sept"] = 9
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
#: "since December 2024", "before 2024", "papers from March 2024", "published in 2023": a bare
#: "in 2024" is not taken (it often names something else, "the World Cup in 2018").
_PHRASE = re.compile(r"\b(?:(?:papers?|published|work)\s+(in|from|during)|(since|after|before|until))\s+"
                     rf"(?:({_MONTH})\.?\s+)?((?:19|20)\d\d)\b", re.I)


def _period(text: str, what: str) -> tuple[date, date]:
    """The first and last day of `2024`, `2024-12` or `2024-12-01`."""
    match = _BOUND.match(text.strip())
    if not match:
        raise InvalidQuestionError(f"{what} must be a date like 2024-12-01, 2024-12 or 2024, got {text!r}")
    year, month, day = int(match[1]), int(match[2] or 1), int(match[3] or 1)
    try:
        if match[3]:
            return date(year, month, day), date(year, month, day)
        if match[2]:
            return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])
        return date(year, 1, 1), date(year, 12, 31)
    except ValueError as exc:
        raise InvalidQuestionError(f"{what} {text!r} is not a real date ({exc})") from None


def _bound(value: Any, what: str, end: bool) -> date | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise InvalidQuestionError(f"{what} must be a date like 2024-12-01, got {value!r}")
    return _period(value, what)[1 if end else 0]


@dataclass(frozen=True)
class PaperFilter:
    """Which papers a question may draw on; every field left empty filters nothing.

    `since`/`until` bound the paper's published date, `listed_since`/`listed_until` the date of
    the Daily Papers page that listed it (both inclusive); `min_upvotes` the page's upvotes;
    `sources` keeps papers read from a file whose name contains one of the given texts. A paper
    whose page shows no upvotes counts as having none.
    `understood_from` is the question's phrase a filter was taken from, if any.
    """

    since: date | None = None
    until: date | None = None
    listed_since: date | None = None
    listed_until: date | None = None
    min_upvotes: int | None = None
    sources: tuple[str, ...] = ()
    understood_from: str | None = None

    @classmethod
    def parse(cls, value: PaperFilter | Mapping[str, Any] | None) -> PaperFilter:
        """A filter from a PaperFilter, None, or a mapping of field names to values (dates as
        text or `date`); raises InvalidQuestionError naming what is wrong."""
        if value is None:
            return cls()
        if isinstance(value, PaperFilter):
            return value
        if not isinstance(value, Mapping):
            raise InvalidQuestionError(f"filters must be a mapping of names to values, got {type(value).__name__}")
        names = [f.name for f in fields(cls) if f.name != "understood_from"]
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise InvalidQuestionError(f"unknown filter(s) {', '.join(map(repr, unknown))}; use {', '.join(names)}")
        upvotes = value.get("min_upvotes")
        if upvotes is not None and (isinstance(upvotes, bool) or not isinstance(upvotes, int) or upvotes < 0):
            raise InvalidQuestionError(f"min_upvotes must be a whole number, 0 or more, got {upvotes!r}")
        sources = value.get("sources") or ()
        sources = (sources,) if isinstance(sources, str) else tuple(sources)
        if not all(isinstance(s, str) and s.strip() for s in sources):
            raise InvalidQuestionError(f"sources must be file names (text), got {value.get('sources')!r}")
        made = cls(since=_bound(value.get("since"), "since", end=False),
                   until=_bound(value.get("until"), "until", end=True),
                   listed_since=_bound(value.get("listed_since"), "listed_since", end=False),
                   listed_until=_bound(value.get("listed_until"), "listed_until", end=True),
                   min_upvotes=upvotes or None,  # at least 0 upvotes filters nothing
                   sources=tuple(s.strip() for s in sources))
        for start, end, what in ((made.since, made.until, "since"), (made.listed_since, made.listed_until,
                                                                     "listed_since")):
            if start and end and start > end:
                raise InvalidQuestionError(f"{what} {start} is after the end of the range ({end}): "
                                           "no paper could match")
        return made

    @property
    def active(self) -> bool:
        """Whether the filter narrows anything."""
        return any(getattr(self, f.name) not in (None, ()) for f in fields(self) if f.name != "understood_from")

    @property
    def dates_given(self) -> bool:
        """Whether a date range was asked for (a question's date phrase then adds none)."""
        return any((self.since, self.until, self.listed_since, self.listed_until))

    def describe(self) -> str:
        """The filter in words: "published since 2024-12-01, with at least 5 upvotes"."""
        parts = [_range("published", self.since, self.until), _range("listed", self.listed_since, self.listed_until)]
        if self.min_upvotes is not None:
            parts.append(f"with at least {self.min_upvotes} upvote{'s' if self.min_upvotes != 1 else ''}")
        if self.sources:
            parts.append("from files matching " + " or ".join(repr(s) for s in self.sources))
        return ", ".join(p for p in parts if p)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: dates as YYYY-MM-DD, empty fields (and `understood_from`) left out; `parse`
        reads it back."""
        return {k: (v.isoformat() if isinstance(v, date) else list(v) if isinstance(v, tuple) else v)
                for k, v in asdict(self).items() if v not in (None, ()) and k != "understood_from"}

    def select(self, catalog: PaperCatalog, paper_ids: Collection[str] = ()) -> Selection:
        """The catalog's papers this filter allows (among `paper_ids` only, if given)."""
        return catalog.select(published=DateRange(self.since, self.until),
                              listed=DateRange(self.listed_since, self.listed_until),
                              min_upvotes=self.min_upvotes, sources=self.sources, paper_ids=paper_ids)

    def with_question_dates(self, question: str) -> tuple[PaperFilter, str]:
        """This filter plus a published-date range understood from a date phrase of the question
        (when no date range was given), and the question without that phrase."""
        if self.dates_given:
            return self, question
        match = _PHRASE.search(question)
        if not match:
            return self, question
        word, month, year = (match[1] or match[2]).casefold(), match[3], int(match[4])
        first, last = _period(f"{year}-{_MONTHS[month.casefold()]}" if month else str(year), "the date")
        since, until = {"since": (first, None), "after": (last + timedelta(days=1), None),
                        "before": (None, first - timedelta(days=1)), "until": (None, last)}.get(word, (first, last))
        cut = match.start(1) if match[1] else match.start(2)  # "papers from March 2024" keeps "papers"
        rest = " ".join((question[:cut] + " " + question[match.end():]).split()).strip(" ,")
        understood = replace(self, since=since, until=until, understood_from=match[0])
        return understood, rest if any(ch.isalnum() for ch in rest) else question


def filter_note(paper_filter: PaperFilter, selection: Selection) -> str:
    """What a filter did, for the answer: which papers were searched and how many match."""
    how = f" (understood from “{paper_filter.understood_from}”)" if paper_filter.understood_from else ""
    total = len(selection.catalog)
    note = (f"Searched only papers {paper_filter.describe()}{how}: {selection.papers} of {total} "
            f"paper{'s' if total != 1 else ''} match.")
    if selection.undated:
        note += (f" {selection.undated} paper{'s were' if selection.undated != 1 else ' was'} left out "
                 "because their date is missing or has no year.")
    return note


def _range(what: str, start: date | None, end: date | None) -> str:
    if start and end:
        return f"{what} {start.isoformat()} to {end.isoformat()}"
    if start:
        return f"{what} since {start.isoformat()}"
    if end:
        return f"{what} until {end.isoformat()}"
    return ""
