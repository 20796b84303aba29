"""Read papers from Daily Papers pages, JSONL and CSV files; merge duplicates by title.

Titles and abstracts of every format go through `normalize.normalize_latex` (LaTeX residue such
as "6times" or "MoE$^2$" → "6×", "MoE²"), so duplicates written both ways merge. When that changes
a text, the original is kept in the paper's metadata as `raw_title` / `raw_abstract`.

Every problem in an input (bad encoding, a broken line, a truncated page) becomes a
`ParseProblem` naming the file and the line; the rest of the input is still read.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..models import PROVENANCE_KEY, RESERVED_METADATA, Paper
from ..text import without_control
from .normalize import normalize_latex

PAGE_SUFFIXES = {".txt", ".md", ".page"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv"}
SUPPORTED_SUFFIXES = PAGE_SUFFIXES | JSONL_SUFFIXES | CSV_SUFFIXES
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_TITLE_CHARS = 400
MAX_ABSTRACT_CHARS = 20_000
MAX_FIELD_CHARS = 1000
#: Extra JSONL/CSV fields kept as metadata: a plain name, not one the index uses itself.
_FIELD_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
#: Metadata keys holding a title or abstract as the input wrote it, before `normalize_latex`.
RAW_KEYS = ("raw_title", "raw_abstract")
_INT64 = 2**63

_BOILERPLATE = {
    "new", "get trending papers in your email inbox!", "subscribe", "daily papers",
    "byak and the research community",
}
_PAGE_DATE = re.compile(r"^[A-Z][a-z]{2} \d{1,2}(, \d{4})?$")
_META_BLOCK = re.compile(r"^\s*•\s*(\d+)\s+authors?\s*\n\s*·\s*\n\s*(.+?)\s*$", re.S)
_META_DATE = re.compile(r"^([A-Z][a-z]{2} \d{1,2}(?:, \d{4})?)(?:\s+(\d+))?$")
_URL = re.compile(r"https?://[^\s<>\"'){}\]]+")
_BLOCK = re.compile(r"(?:[^\n]*\S[^\n]*(?:\n|$))+")


@dataclass
class ParseProblem:
    """Something in an input that was skipped or repaired, with where it is."""

    path: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.location}" if self.location else self.path
        return f"{where}: {self.message}"


@dataclass
class CorpusLoad:
    """The outcome of reading inputs: unique papers plus what was merged and skipped."""

    papers: list[Paper] = field(default_factory=list)
    entries: int = 0
    duplicates_merged: int = 0
    files_read: int = 0
    problems: list[ParseProblem] = field(default_factory=list)


def bundled_corpus_dir() -> Path:
    """The folder of Daily Papers pages shipped inside the package."""
    return Path(str(resources.files("assistant") / "data" / "corpus"))


def normalize_title(title: str) -> str:
    """The key two titles share when they name the same paper."""
    text = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(text.split())


def paper_id_for(title: str) -> str:
    """A stable short id derived from the normalised title."""
    return "p" + hashlib.sha1(normalize_title(title).encode()).hexdigest()[:12]


def load_corpus(paths: Iterable[str | Path] | None = None, *, include_bundled: bool = True) -> CorpusLoad:
    """Read the bundled pages (unless excluded) and every given file or folder, merging duplicates."""
    result = CorpusLoad()
    inputs: list[Path] = [bundled_corpus_dir()] if include_bundled else []
    inputs += [Path(p) for p in paths or []]
    by_key: dict[str, Paper] = {}
    for path in inputs:
        for file in _expand(path, result.problems):
            result.files_read += 1
            known_problems = len(result.problems)
            papers = _read_file(file, result.problems)
            if not papers and len(result.problems) == known_problems:
                result.problems.append(ParseProblem(str(file), "", "no papers found (empty file?)"))
            for paper in papers:
                result.entries += 1
                key = normalize_title(paper.title)
                if key in by_key:
                    _merge(by_key[key], paper)
                    result.duplicates_merged += 1
                else:
                    by_key[key] = paper
    result.papers = list(by_key.values())
    return result


def _merge(kept: Paper, dup: Paper) -> None:
    for prov in dup.provenance:
        if prov not in kept.provenance:
            kept.provenance.append(prov)
    for key, value in dup.metadata.items():
        if key not in RAW_KEYS:  # they describe the duplicate's text, which is not kept
            kept.metadata.setdefault(key, value)


def is_indexable(path: str | Path) -> bool:
    """Whether `path` is a folder or a file of a supported type (worth remembering as a source)."""
    path = Path(path)
    return path.is_dir() or (path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES)


def _expand(path: Path, problems: list[ParseProblem]) -> Iterator[Path]:
    """Yield the supported files under `path`, reporting (and skipping) what cannot be read."""
    try:
        path.stat()
    except OSError as exc:
        why = {errno.ENOENT: "no such file or folder", errno.ELOOP: "symbolic link loop"}.get(exc.errno or 0)
        if exc.errno == errno.ENOENT and path.is_symlink():
            why = "broken symbolic link"
        problems.append(ParseProblem(str(path), "", f"{why or exc.strerror or exc}; skipped"))
        return
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_SUFFIXES:
            problems.append(ParseProblem(str(path), "", f"unsupported file type {path.suffix or '(none)'}; "
                                         f"use {', '.join(sorted(SUPPORTED_SUFFIXES))}; skipped"))
            return
        yield path
        return
    if not path.is_dir():
        problems.append(ParseProblem(str(path), "", "not a regular file or folder; skipped"))
        return
    seen: set[str] = set()
    found = 0
    for root, dirs, files in os.walk(path, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            problems.append(ParseProblem(root, "", "folder already visited (symbolic link loop); skipped"))
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for name in sorted(files):
            file = Path(root) / name
            if name.startswith("."):
                continue
            if file.suffix.lower() not in SUPPORTED_SUFFIXES:
                problems.append(ParseProblem(str(file), "", "unsupported file type; skipped"))
                continue
            found += 1
            yield file
    if not found:
        problems.append(ParseProblem(str(path), "", "folder holds no "
                                     f"{', '.join(sorted(SUPPORTED_SUFFIXES))} files"))


def _read_text(path: Path, problems: list[ParseProblem]) -> str | None:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a pipe or a device would block or never end
            problems.append(ParseProblem(str(path), "", "not a regular file; skipped"))
            return None
        size = info.st_size
        if size > MAX_FILE_BYTES:
            problems.append(ParseProblem(str(path), "", f"file is {size / 2**20:.0f} MiB, over the "
                                         f"{MAX_FILE_BYTES // 2**20} MiB limit; split it into smaller files; skipped"))
            return None
        data = path.read_bytes()
    except OSError as exc:
        problems.append(ParseProblem(str(path), "", f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        if exc.end == len(data) and exc.reason == "unexpected end of data":
            problems.append(ParseProblem(str(path), f"{line}", "file ends inside a character (truncated?); "
                                         "the broken character was dropped"))
            return data[: exc.start].decode("utf-8-sig")
        problems.append(ParseProblem(str(path), f"{line}", f"not UTF-8 (byte {exc.start}); "
                                     "read as Latin-1, check the text"))
        return data.decode("latin-1")


def _read_file(path: Path, problems: list[ParseProblem]) -> list[Paper]:
    text = _read_text(path, problems)
    if text is None:
        return []
    if "\x00" in text:
        problems.append(ParseProblem(str(path), "", "binary file (NUL bytes); skipped"))
        return []
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return parse_jsonl(text, str(path), problems)
    if suffix in CSV_SUFFIXES:
        return parse_csv(text, str(path), problems)
    return parse_page(text, str(path), problems)


def _label(source: str) -> str:
    """Provenance label: the bundled pages by file name, user files by path."""
    path = Path(source)
    return path.name if path.parent == bundled_corpus_dir() else source


def parse_page(text: str, source: str, problems: list[ParseProblem]) -> list[Paper]:
    """Parse one Daily Papers page (title / abstract / optional metadata blocks)."""
    blocks = [(text.count("\n", 0, m.start()) + 1, m.group().strip("\n")) for m in _BLOCK.finditer(text)]
    page_date = None
    i = 0
    while i < len(blocks) and blocks[i][1].strip().casefold() in _BOILERPLATE:
        i += 1
    if i < len(blocks) and _PAGE_DATE.match(blocks[i][1].strip()):
        page_date = blocks[i][1].strip()
        i += 1
    papers: list[Paper] = []
    label = _label(source)
    while i < len(blocks):
        line, title = blocks[i]
        title = " ".join(title.split())
        if _META_BLOCK.match(blocks[i][1]):
            problems.append(ParseProblem(source, str(line), "author/date block without a paper; skipped"))
            i += 1
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        if nxt is None or _META_BLOCK.match(nxt[1]):
            problems.append(ParseProblem(source, str(line), f"title without an abstract ({title[:60]!r}); skipped"))
            i += 1 if nxt is None else 2
            continue
        if "\n" in blocks[i][1].strip() or len(title) > MAX_TITLE_CHARS:
            problems.append(ParseProblem(source, str(line), "expected a one-line title; block skipped"))
            i += 1
            continue
        abstract = " ".join(nxt[1].split())
        metadata: dict[str, Any] = {"page_date": page_date} if page_date else {}
        i += 2
        if i < len(blocks) and (meta := _META_BLOCK.match(blocks[i][1])):
            metadata.update(_page_metadata(meta))
            i += 1
        papers.append(_make_paper(title, abstract, metadata, f"{label}:{line}"))
    return papers


def _page_metadata(meta: re.Match[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"authors": int(meta.group(1))}
    date = _META_DATE.match(meta.group(2).strip())
    if date:
        out["published"] = date.group(1)
        if date.group(2):
            out["upvotes"] = int(date.group(2))
    else:
        out["published"] = meta.group(2).strip()
    return out


def _make_paper(title: str, abstract: str, metadata: dict[str, Any], provenance: str) -> Paper:
    raw_title, raw_abstract = _plain_text(title), _plain_text(abstract)
    title, abstract = normalize_latex(raw_title) or raw_title, normalize_latex(raw_abstract) or raw_abstract
    if title != raw_title:
        metadata = {**metadata, "raw_title": raw_title}
    if abstract != raw_abstract:
        metadata = {**metadata, "raw_abstract": raw_abstract[:MAX_ABSTRACT_CHARS]}
    links = [u.rstrip(".,;:}") for u in _URL.findall(abstract)]
    if links:
        metadata = {**metadata, "links": links}
    return Paper(paper_id_for(title), title, abstract[:MAX_ABSTRACT_CHARS], metadata, [provenance])


def _plain_text(text: str) -> str:
    """Text on one line: control characters (terminal escapes included) and runs of space removed."""
    return " ".join(without_control(text, " ").split())


def _record_to_paper(record: dict[str, Any], source: str, where: str,
                     problems: list[ParseProblem]) -> Paper | None:
    fields = {k: record.get(k) for k in ("title", "abstract")}
    not_text = [k for k, v in fields.items() if v is not None and not isinstance(v, str)]
    if not_text:
        problems.append(ParseProblem(source, where, f"{' and '.join(not_text)} must be text; skipped"))
        return None
    title, abstract = (_plain_text(fields[k] or "") for k in ("title", "abstract"))
    missing = [k for k, v in (("title", title), ("abstract", abstract)) if not v]
    if missing:
        problems.append(ParseProblem(source, where, f"missing {' and '.join(missing)}; skipped"))
        return None
    if len(title) > MAX_TITLE_CHARS:
        problems.append(ParseProblem(source, where, f"title longer than {MAX_TITLE_CHARS} characters; skipped"))
        return None
    metadata: dict[str, Any] = {}
    ignored = []
    for key, value in record.items():
        if key in ("title", "abstract") or value in (None, ""):
            continue
        plain = _plain_value(value)
        if plain == "":
            continue
        if plain is None or not _FIELD_NAME.match(str(key)) or key in RESERVED_METADATA or key in RAW_KEYS \
                or key == PROVENANCE_KEY:
            ignored.append(repr(key))
        else:
            metadata[key] = plain
    if ignored:
        problems.append(ParseProblem(source, where, f"field(s) {', '.join(ignored)} ignored: names must be plain "
                                     "words and values text, numbers or lists of them"))
    return _make_paper(title, abstract, metadata, f"{_label(source)}:{where}")


def _plain_value(value: Any) -> Any:
    """A field value the index can store (short text, bool, int64, finite float, list of them), or None."""
    if isinstance(value, list):
        items = [_plain_value(v) for v in value]
        return items if items and all(v is not None and not isinstance(v, list) for v in items) else None
    if isinstance(value, str):
        return _plain_text(value)[:MAX_FIELD_CHARS]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None


def parse_jsonl(text: str, source: str, problems: list[ParseProblem]) -> list[Paper]:
    """Parse JSON Lines: one object per line with `title` and `abstract`; other fields kept."""
    papers = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(ParseProblem(source, str(number), f"invalid JSON ({exc.msg}); skipped"))
            continue
        if not isinstance(record, dict):
            problems.append(ParseProblem(source, str(number), "not a JSON object; skipped"))
            continue
        paper = _record_to_paper(record, source, str(number), problems)
        if paper:
            papers.append(paper)
    return papers


def parse_csv(text: str, source: str, problems: list[ParseProblem]) -> list[Paper]:
    """Parse CSV with a header row naming at least `title` and `abstract`."""
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower() for c in reader.fieldnames or []}
    missing = {"title", "abstract"} - columns
    if missing:
        problems.append(ParseProblem(source, "1", f"header lacks column(s) {', '.join(sorted(missing))}; file skipped"))
        return []
    papers = []
    try:
        for row in reader:
            record = {(k or "").strip().lower(): v for k, v in row.items() if k is not None}
            paper = _record_to_paper(record, source, str(reader.line_num), problems)
            if paper:
                papers.append(paper)
    except csv.Error as exc:
        problems.append(ParseProblem(source, str(reader.line_num), f"malformed CSV ({exc}); rest of file skipped"))
    return papers
