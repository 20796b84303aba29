"""Recognising a damaged embedded index folder and clearing it for `assistant index --rebuild`.

Only what Chroma, the keyword index and the sentence vectors write is ever removed:
`chroma.sqlite3` and `sentences-*.sqlite3` (and their journal files), Chroma's segment folders
(UUID names holding HNSW files) and `keyword-*` folders (tantivy's files and our manifest; NumPy
files from the older BM25 format). Anything else in the folder, and the lock files, are left alone.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path

CHROMA_DB = "chroma.sqlite3"
_DB_FILES = (CHROMA_DB, f"{CHROMA_DB}-wal", f"{CHROMA_DB}-shm", f"{CHROMA_DB}-journal")
_SEGMENT_FILES = {"header.bin", "data_level0.bin", "length.bin", "link_lists.bin", "index_metadata.pickle"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_KEYWORD_SUFFIXES = {".json", ".npy", ".idx", ".pos", ".term", ".store", ".fast", ".fieldnorm", ".del", ".lock"}


def _only_files(folder: Path, allowed: set[str], by_suffix: bool = False) -> bool:
    """Whether `folder` holds nothing but plain files with allowed names (or suffixes)."""
    entries = list(folder.iterdir())
    return all(e.is_file() and not e.is_symlink() and ((e.suffix if by_suffix else e.name) in allowed)
               for e in entries)


def segment_folders(folder: Path) -> list[Path]:
    """Chroma's vector segment folders in an index folder."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink() and _UUID.match(p.name)
                  and _only_files(p, _SEGMENT_FILES))


def keyword_folders(folder: Path) -> list[Path]:
    """The keyword index folders, finished or half-written."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()
                  and p.name.startswith("keyword-") and _only_files(p, _KEYWORD_SUFFIXES, by_suffix=True))


def half_deleted(folder: Path) -> str | None:
    """Why `folder` looks like an index with parts deleted (a database gone or emptied while
    vector segments remain), or None."""
    db = Path(folder) / CHROMA_DB
    segments = segment_folders(Path(folder))
    if segments and (not db.is_file() or db.stat().st_size == 0):
        state = "missing" if not db.exists() else "empty"
        return f"{CHROMA_DB} is {state} but {len(segments)} vector segment folder(s) remain"
    return None


def remove_index_files(folder: Path) -> list[str]:
    """Delete the index files Chroma, the keyword index and the sentence vectors wrote in `folder`;
    returns their names."""
    folder = Path(folder)
    forget_open_store(folder)
    removed = []
    sentence_files = [p.name for p in folder.glob("sentences-*.sqlite3*")] if folder.is_dir() else []
    for name in [*_DB_FILES, *sentence_files]:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(name)
    for path in segment_folders(folder) + keyword_folders(folder):
        shutil.rmtree(path)
        removed.append(path.name + "/")
    return removed


def forget_open_store(folder: Path) -> None:
    """Drop the Chroma client this process holds on `folder` (Chroma shares one per path and keeps
    it even when opening failed), so that the next client opens the files afresh."""
    from chromadb.api.shared_system_client import SharedSystemClient

    key = str(folder)
    system = SharedSystemClient._identifier_to_system.pop(key, None)
    SharedSystemClient._identifier_to_refcount.pop(key, None)
    if system is not None:
        with contextlib.suppress(Exception):  # a client that failed to open cannot stop cleanly
            system.stop()
