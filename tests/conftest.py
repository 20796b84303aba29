"""Shared fixtures: one real index (real corpus, real model, real Chroma) built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant import Assistant, Paper, Settings
from assistant.corpus.parse import load_corpus
from assistant.indexing.build import IndexReport, build_index


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a complete index of the bundled corpus."""
    return tmp_path_factory.mktemp("index")


@pytest.fixture(scope="session")
def settings(index_dir: Path) -> Settings:
    """Settings pointing at the session index, ignoring the caller's ASSISTANT_* environment."""
    return Settings.from_env(env={}, index_dir=index_dir)


@pytest.fixture(scope="session")
def first_build(settings: Settings) -> IndexReport:
    """The report of the cold build of the session index."""
    return build_index(settings, progress=False)


@pytest.fixture(scope="session")
def assistant(settings: Settings, first_build: IndexReport) -> Assistant:
    """A long-lived Assistant over the session index."""
    return Assistant(settings)


@pytest.fixture(scope="session")
def bundled_papers() -> list[Paper]:
    """The bundled corpus, parsed once: real papers for tests that index small files of their own."""
    return load_corpus().papers
