"""Indexing into a real Chroma store with the real model: counts, incremental runs, tags."""

from __future__ import annotations

from assistant import Settings
from assistant.indexing.build import IndexReport, build_index, expected_tags, open_store
from assistant.indexing.embedding import MAX_TOKENS, MiniLMEncoder
from assistant.indexing.store import IndexStore


def test_cold_build_indexes_every_paper(first_build: IndexReport, settings: Settings) -> None:
    assert first_build.papers == 333
    assert first_build.duplicates_merged == 59
    assert first_build.added == first_build.chunks > 333
    assert first_build.unchanged == first_build.removed == 0
    store = open_store(settings)
    assert store.count() == first_build.chunks
    assert store.mismatch() is None


def test_second_run_embeds_nothing(first_build: IndexReport, settings: Settings) -> None:
    again = build_index(settings, progress=False)
    assert again.added == 0 and again.removed == 0
    assert again.unchanged == first_build.chunks
    assert "embed+store" not in again.seconds


def test_chunks_fit_the_embedder_window_and_carry_the_title(first_build: IndexReport, settings: Settings) -> None:
    encoder = MiniLMEncoder()
    chunks = open_store(settings).all_chunks()
    longest = max(encoder.count_tokens(f"{c.title}\n{c.text}") for c in chunks)
    assert longest < MAX_TOKENS
    assert all(c.title and c.paper_id for c in chunks)


def test_index_built_with_other_settings_is_detected(first_build: IndexReport, settings: Settings) -> None:
    other = {**expected_tags(settings), "chunking": "something-else"}
    store = IndexStore(settings.index_dir, None, settings.collection, other)
    message = store.mismatch()
    assert message is not None and "chunking" in message


def test_vectors_are_unit_length_and_match_the_query_embedding(first_build: IndexReport, settings: Settings) -> None:
    store = open_store(settings)
    encoder = MiniLMEncoder()
    question = "ShadowKV stores the low-rank key cache and offloads the value cache"
    hits = store.query(encoder.encode([question])[0].tolist(), 3)
    assert hits[0].title.startswith("ShadowKV")
    assert 0.5 < hits[0].score <= 1.0
