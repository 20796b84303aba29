"""Indexing: papers → chunks → embeddings in Chroma, plus the keyword index beside them.

`chunking` splits abstracts, `embedding` runs the offline MiniLM model, `store` wraps the Chroma
collection, `keyword` holds BM25, `build` runs an incremental build, `repair` cleans damaged folders.
"""
