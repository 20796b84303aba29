"""Files added from the chat: checked, kept in the uploads folder, indexed with the corpus.

The folder (`Settings.uploads_folder`, by default `uploads` inside the index folder) is read by
every indexing run, like the bundled pages: uploads survive restarts and `--rebuild`, and
`repair.py` never removes them. A file is kept only when it holds at least one paper; its
broken lines are reported (by line number) and skipped, the rest is indexed.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..corpus.parse import MAX_FILE_BYTES, SUPPORTED_SUFFIXES, CorpusLoad, ParseProblem, load_corpus
from ..errors import CorpusError

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def uploaded_files(folder: Path) -> list[Path]:
    """The files kept in the uploads folder (none when it does not exist)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                  and not p.name.startswith("."))


@dataclass
class Upload:
    """A file kept in the uploads folder and what reading it found."""

    path: Path
    corpus: CorpusLoad

    def problem_lines(self) -> list[str]:
        """The skipped or repaired parts, by line ("line 3: invalid JSON (...); skipped")."""
        return [_where(p) for p in self.corpus.problems]


def add_upload(file: Path, folder: Path) -> Upload:
    """Check an uploaded file (type, size, at least one paper) and keep a copy in `folder` under
    its own name (made safe, numbered if taken). Raises CorpusError saying why a file is refused."""
    suffixes = ", ".join(sorted(SUPPORTED_SUFFIXES))
    if file.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise CorpusError(f"{file.name}: {file.suffix or 'no'} files cannot be added; use {suffixes} "
                          "(JSON Lines, CSV with title and abstract columns, or a saved Daily Papers page as text)")
    size = file.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CorpusError(f"{file.name} is {size / 2**20:.1f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB: "
                          "split it into smaller files")
    folder.mkdir(parents=True, exist_ok=True)
    target = _free_name(folder, file.name)
    shutil.copyfile(file, target)
    corpus = load_corpus([target], include_bundled=False)
    if not corpus.papers:
        target.unlink()
        why = "; ".join(_where(p) for p in corpus.problems[:5]) or "it is empty"
        raise CorpusError(f"{file.name} holds no paper that can be read ({why}); nothing was added")
    return Upload(target, corpus)


def _where(problem: ParseProblem) -> str:
    return f"line {problem.location}: {problem.message}" if problem.location else problem.message


def _free_name(folder: Path, name: str) -> Path:
    """`name` made safe for a file name, numbered (`papers-2.jsonl`) if the folder has it already."""
    stem, suffix = _UNSAFE.sub("_", Path(name).stem).strip("._") or "upload", Path(name).suffix.lower()
    candidate, number = folder / f"{stem}{suffix}", 2
    while candidate.exists():
        candidate, number = folder / f"{stem}-{number}{suffix}", number + 1
    return candidate
