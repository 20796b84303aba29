"""Corpus: Daily Papers pages, JSONL and CSV files parsed into deduplicated `Paper`s."""
