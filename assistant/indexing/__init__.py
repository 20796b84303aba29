"""Indexing: papers → chunks → embeddings in Chroma, plus the keyword index beside them.

`index` holds `PaperIndex`, the one object the rest of the package is given; `chunking` splits
abstracts, `embedding` runs the offline MiniLM model, `store` wraps the Chroma collection, `keyword`
holds BM25 (tantivy), `sentences` the sentence vectors made at index time, `build` runs an
incremental build, `repair` cleans damaged folders.
"""
