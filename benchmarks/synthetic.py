"""Synthetic collections for scale tests: paper-like abstracts with GENERATED vectors.

Texts are assembled from the real corpus: each synthetic paper takes a real paper as its topic,
borrows sentences from it and its nearest neighbours, renames the method to an invented name,
perturbs the figures and swaps a few content words for other words of the corpus vocabulary.

Vectors are not computed by the model (100k abstracts would take hours on 2 cores). Each
synthetic chunk gets a vector clustered like real ones: a mix of the real chunk vectors of its
topic paper and a neighbour, plus Gaussian noise, renormalised to unit length (cosine to its
centre ~0.7-0.85, like related papers). Latency and memory depend on the collection's size and
shape, not on what the vectors mean; answer quality on such a collection means nothing.

The collection gets the same tags, chunk metadata and fingerprint handling as a real index
(`IndexStore.add`, `PaperIndex`), plus the keyword index (written as the chunks are) and sentence
vectors (generated like the chunks': the chunk's vector plus noise), so the assistant
opens it like any other. The real papers (with their real vectors) are included too.

Usage: python benchmarks/synthetic.py --papers 10000 --real-index DIR --out DIR
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from assistant.indexing import keyword
from assistant.indexing.catalog import PaperCatalog
from assistant.indexing.embedding import DIMENSIONS, MiniLMEncoder, vector_key
from assistant.indexing.index import PaperIndex
from assistant.indexing.store import INCOMPLETE
from assistant.models import Chunk, ScoredChunk
from assistant.settings import Settings
from assistant.text import STOPWORDS, split_sentences

VECTORS_NOTE = ("vectors are GENERATED (real chunk vectors as cluster centres + Gaussian noise, renormalised; "
                "sentence vectors: their chunk's vector + noise), not model embeddings; texts are assembled from "
                "the real corpus")
#: Part of the cache marker: collections made by an older generator are made again.
GENERATOR = "v4-names-2-4-syllables"
CHUNK_WORDS = 140
NEIGHBOURS = 4
_WORD = re.compile(r"\b[a-z][a-z-]{3,}\b")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?\b")
_SYLLABLES = ("lu", "mor", "ka", "vex", "ti", "dra", "no", "sel", "qua", "rin", "po", "zen", "fal", "cor", "mi",
              "tar", "ve", "lon", "sha", "gri", "bo", "nex", "ul", "pra")
#: Synthetic papers are listed on pages dated over three years from this day.
SYNTHETIC_START, SYNTHETIC_DAYS = date(2023, 1, 1), 3 * 365
_SUFFIXES = ("", "LM", "Net", "Former", "KV", "-R1", "Bench", "RL", "Flow", "Align", "X", "-VL")


class _RealCollection:
    """The real index's papers: chunk texts, vectors, sentences and nearest neighbours."""

    def __init__(self, real: Settings) -> None:
        got = PaperIndex(real).store.collection.get(include=["documents", "metadatas", "embeddings"])
        self.rows = list(zip(got["ids"], got["documents"], got["metadatas"], np.asarray(got["embeddings"])))
        by_paper: dict[str, list[int]] = {}
        for i, (_, _, meta, _) in enumerate(self.rows):
            by_paper.setdefault(meta["paper_id"], []).append(i)
        self.papers = sorted(by_paper)
        self.chunk_rows = [sorted(by_paper[p], key=lambda i: self.rows[i][2]["position"]) for p in self.papers]
        self.titles = [self.rows[rows[0]][2]["title"] for rows in self.chunk_rows]
        self.sentences = [[s for i in rows for s in split_sentences(self.rows[i][1])] for rows in self.chunk_rows]
        self.vectors = [np.stack([self.rows[i][3] for i in rows]) for rows in self.chunk_rows]
        centres = np.stack([v.mean(axis=0) for v in self.vectors])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        sims = centres @ centres.T
        np.fill_diagonal(sims, -1)
        self.neighbours = np.argsort(-sims, axis=1)[:, :NEIGHBOURS]
        counts = Counter(w for s in self.sentences for t in s for w in _WORD.findall(t) if w not in STOPWORDS)
        self.vocab = [w for w, _ in counts.most_common()]
        weights = np.cumsum([counts[w] for w in self.vocab], dtype=float)
        self.vocab_cdf = weights / weights[-1]
        self.names = [n for n in map(_name_of, self.titles) if n]


class SyntheticPapers:
    """Deterministic generator of synthetic papers (title, chunks, vectors) from the real collection."""

    def __init__(self, real: _RealCollection, seed: int = 0) -> None:
        self.real = real
        self.rng = np.random.default_rng(seed)
        self.used_names: set[str] = {n.lower() for n in real.names}

    def _name(self) -> str:
        rng = self.rng
        while True:
            # 2-4 syllables: 4.1M names (2-3 gave 173k, which a 300k collection ran out of and looped on)
            stem = "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 5)))
            name = stem.capitalize() + rng.choice(_SUFFIXES)
            if name.lower() not in self.used_names:
                self.used_names.add(name.lower())
                return name

    def _rewrite(self, sentence: str, old_names: list[str], new_name: str) -> str:
        rng = self.rng
        for old in old_names:
            sentence = sentence.replace(old, new_name)
        sentence = _NUMBER.sub(lambda m: _perturb(m.group(), rng), sentence)

        def swap(m: re.Match) -> str:
            if rng.random() < 0.08:
                return self.real.vocab[int(np.searchsorted(self.real.vocab_cdf, rng.random()))]
            return m.group()
        return _WORD.sub(swap, sentence)

    def paper(self, number: int) -> tuple[str, str, list[str], np.ndarray]:
        """One synthetic paper: (paper_id, title, chunk texts, unit vectors of the chunks)."""
        rng, real = self.rng, self.real
        base = int(rng.integers(len(real.papers)))
        neighbour = int(rng.choice(real.neighbours[base]))
        name = self._name()
        base_title = real.titles[base]
        subtitle = base_title.split(":", 1)[1].strip() if ":" in base_title else base_title
        title = f"{name}: {self._rewrite(subtitle, [], name)}"
        old_names = [n for n in (_name_of(real.titles[base]), _name_of(real.titles[neighbour])) if n]
        pool = real.sentences[base] + real.sentences[neighbour]
        k = int(rng.integers(4, min(9, len(pool)) + 1)) if len(pool) >= 4 else len(pool)
        picked = [real.sentences[base][0]] + [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]
        sentences = [self._rewrite(s, old_names, name) for s in dict.fromkeys(picked)]
        chunks, current = [], []
        for sentence in sentences:
            if current and sum(len(s.split()) for s in current) + len(sentence.split()) > CHUNK_WORDS:
                chunks.append(" ".join(current))
                current = []
            current.append(sentence)
        chunks.append(" ".join(current))
        vectors = []
        for position in range(len(chunks)):
            a = real.vectors[base][min(position, len(real.vectors[base]) - 1)]
            b = real.vectors[neighbour][min(position, len(real.vectors[neighbour]) - 1)]
            mix = rng.uniform(0.55, 1.0)
            centre = mix * a + (1 - mix) * b
            centre /= np.linalg.norm(centre)
            noise = rng.standard_normal(centre.shape[0])
            noise *= rng.uniform(0.6, 1.0) / np.linalg.norm(noise)
            v = centre + noise
            vectors.append(v / np.linalg.norm(v))
        paper_id = "s" + hashlib.sha1(f"synthetic-{number}-{title}".encode()).hexdigest()[:12]
        return paper_id, title, chunks, np.stack(vectors).astype(np.float32)


    def page_metadata(self, number: int) -> dict:
        """Daily Papers page metadata like the real pages': a listed date, mostly a published date
        a few days earlier, upvotes for some, and the page (50 papers a page) it was seen on."""
        rng = self.rng
        listed = SYNTHETIC_START + timedelta(days=int(rng.integers(SYNTHETIC_DAYS)))
        meta: dict = {"page_date": f"{listed:%b} {listed.day}, {listed.year}",
                      "pages": f"synthetic-{number // 50:04d}.txt:{number % 50 + 1}"}
        if rng.random() < 0.9:
            published = listed - timedelta(days=int(rng.integers(0, 10)))
            meta["published"] = f"{published:%b} {published.day}, {published.year}"
        if rng.random() < 0.5:
            meta["upvotes"] = int(rng.geometric(0.1))
        return meta


def _name_of(title: str) -> str | None:
    """The method name of a title like 'ShadowKV: ...' (None when the title has none)."""
    head = title.split(":")[0].strip() if ":" in title else ""
    return head if head and len(head.split()) <= 3 else None


def _perturb(number: str, rng: np.random.Generator) -> str:
    if re.fullmatch(r"(19|20)\d\d", number):
        return number
    value = float(number) * rng.uniform(0.6, 1.4)
    return f"{value:.{len(number.split('.')[1])}f}" if "." in number else str(max(1, round(value)))


def build(papers: int, real: Settings, out: Settings, seed: int = 0, batch: int = 2000,
          progress: bool = True) -> dict:
    """Write the real papers plus `papers` synthetic ones into `out`'s store and keyword index."""
    started = time.perf_counter()
    source = _RealCollection(real)
    gen = SyntheticPapers(source, seed)
    index = PaperIndex(out)
    store = index.store
    store.reset()
    real_index = PaperIndex(real)
    fingerprint = f"synthetic-{papers}-seed{seed}-" + real_index.store.fingerprint()
    store.set_fingerprint(INCOMPLETE)
    # Sentence vectors as an indexing run stores them: the real papers' real ones, generated ones
    # (the chunk's vector plus noise) for the synthetic papers' sentences.
    shutil.copyfile(real_index.sentences.path, index.sentences.path)
    sentence_writer = index.sentences.writer(fresh=False)
    tokenizer, noise = MiniLMEncoder(), np.random.default_rng(seed + 1)
    catalog_rows: list[tuple[str, dict]] = []
    checkpoints: list[tuple[int, float]] = []  # (synthetic papers written, seconds since start): the build's curve

    def add_sentences(chunks: list[Chunk], vectors: np.ndarray) -> None:
        texts, centres = [], []
        for chunk, vector in zip(chunks, vectors):
            for sentence in split_sentences(chunk.text):
                texts.append(sentence)
                centres.append(vector)
        jitter = noise.standard_normal((len(texts), DIMENSIONS)).astype(np.float32)
        jitter *= 0.8 / np.linalg.norm(jitter, axis=1, keepdims=True)
        mixed = np.stack(centres) + jitter
        keys = [vector_key(ids) for ids in tokenizer.tokenize(texts)]
        unique = dict(zip(keys, mixed / np.linalg.norm(mixed, axis=1, keepdims=True)))
        sentence_writer.add(list(unique), np.stack(list(unique.values())))

    def stored_chunks() -> Iterator[ScoredChunk]:
        """Each batch written to the store, then handed to the keyword writer (memory stays flat)."""
        for start in range(0, len(source.rows), batch):  # the real papers, with their real vectors
            rows = source.rows[start:start + batch]
            store.collection.add(ids=[r[0] for r in rows], documents=[r[1] for r in rows],
                                 metadatas=[r[2] for r in rows], embeddings=np.stack([r[3] for r in rows]))
            catalog_rows.extend((r[0], r[2]) for r in rows)
            yield from (ScoredChunk(r[0], r[2]["paper_id"], r[2]["title"], r[1]) for r in rows)
        chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        meta: dict[str, dict] = {}
        for number in range(papers):
            paper_id, title, texts, vecs = gen.paper(number)
            meta[paper_id] = gen.page_metadata(number)
            for position, text in enumerate(texts):
                embedded = f"{title}\n{text}"
                chunks.append(Chunk(f"{paper_id}-{position}", paper_id, title, text, embedded, position,
                                    hashlib.sha1(embedded.encode()).hexdigest()[:16]))
            vectors.append(vecs)
            if len(chunks) >= batch or number == papers - 1:
                store.add(chunks, np.concatenate(vectors).tolist(), meta)
                add_sentences(chunks, np.concatenate(vectors))
                catalog_rows.extend((c.chunk_id, {"paper_id": c.paper_id, **meta[c.paper_id]}) for c in chunks)
                yield from (ScoredChunk(c.chunk_id, c.paper_id, c.title, c.text) for c in chunks)
                chunks, vectors, meta = [], [], {}
                elapsed = time.perf_counter() - started
                if (number + 1) // 10_000 > len(checkpoints) or number == papers - 1:
                    checkpoints.append((number + 1, round(elapsed, 1)))
                if progress:
                    print(f"\r  synthetic papers: {number + 1}/{papers}, {elapsed:.0f} s", end="", file=sys.stderr,
                          flush=True)
        if progress:
            print(file=sys.stderr)

    keyword.write(index.keyword_dir, fingerprint, previous=None, added=(), removed=(), all_chunks=stored_chunks)
    PaperCatalog.from_metadata(catalog_rows, fingerprint).save(index.catalog_path)
    sentence_writer.set_complete(True)
    sentence_writer.close()
    store.set_fingerprint(fingerprint)
    return {"papers": papers + len(source.papers), "synthetic_papers": papers, "real_papers": len(source.papers),
            "chunks": store.count(), "write_s": round(time.perf_counter() - started, 1), "checkpoints": checkpoints,
            "note": VECTORS_NOTE}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, required=True, help="number of synthetic papers")
    parser.add_argument("--real-index", type=Path, required=True, help="a complete index of the real corpus")
    parser.add_argument("--out", type=Path, required=True, help="index folder to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    real = Settings.from_env(env={}, index_dir=args.real_index)
    out = Settings.from_env(env={}, index_dir=args.out)
    print(json.dumps(build(args.papers, real, out, args.seed)))


if __name__ == "__main__":
    main()
