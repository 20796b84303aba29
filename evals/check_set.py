#!/usr/bin/env python3
"""Check eval set files against the corpus; exit 1 listing every problem.

Usage: python evals/check_set.py [--corpus PATH ...] [FILE ...]
Files default to train.jsonl, dev.jsonl and test.jsonl beside this script; the corpus is the bundled one plus
any --corpus files or folders (the same reader as `assistant index`). Checks: see
`assistant.evals.dataset.check_eval_set`.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from assistant.corpus.parse import load_corpus
from assistant.evals.dataset import KINDS, check_eval_set, parse_line

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    defaults = [HERE / name for name in ("train.jsonl", "dev.jsonl", "test.jsonl")]
    parser.add_argument("files", nargs="*", type=Path, default=defaults)
    parser.add_argument("--corpus", nargs="*", default=[], help="extra corpus files or folders")
    args = parser.parse_args(argv)
    papers = load_corpus(args.corpus).papers
    print(f"corpus: {len(papers)} unique papers")
    problems = check_eval_set(args.files, papers)
    for path in args.files:
        if path.is_file():
            kinds = Counter(q.kind for q, _ in map(parse_line, path.read_text(encoding="utf-8").splitlines()) if q)
            print(f"{path}: {sum(kinds.values())} questions ({', '.join(f'{k} {kinds[k]}' for k in KINDS)})")
    if problems:
        print(f"\nFAILED: {len(problems)} problem(s):")
        for problem in problems:
            print(f"  - {problem}")
        return 1
    print("\nOK: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
