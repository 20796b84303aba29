"""The CI gate: thresholds on metrics, read from one JSON file.

The file maps dotted paths into `metrics.json` to limits:
`{"min": {"overall.retrieval.hit@5": 0.8, ...}, "max": {"overall.answers.fabricated_citations": 0}}`.
`write_thresholds` re-sets the limits just under (or over) measured figures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MARGIN = 0.02
#: Limits that are policy, not measurement: `write_thresholds` never moves them.
FIXED = {"overall.answers.fabricated_citations": ("max", 0)}
DEFAULT_MIN = (
    "overall.retrieval.hit@1", "overall.retrieval.hit@5", "overall.retrieval.mrr@10", "overall.retrieval.recall@10",
    "by_kind.multi.retrieval.recall@10", "overall.answers.keyword_accuracy", "overall.answers.citation_precision",
    "overall.answers.citation_recall", "overall.answers.strict_accuracy", "overall.grounding.citation_recall",
    "overall.grounding.citation_precision", "overall.refusal.refusal_rate",
)
DEFAULT_MAX = ("overall.refusal.false_refusal_rate", "overall.grounding.uncited_sentences", "overall.calibration.ece")
#: Gated for every suite a set names (`by_suite.<suite>.…`), where the suite measures them.
SUITE_MIN = ("answers.keyword_accuracy", "answers.strict_accuracy", "refusal.refusal_rate")
SUITE_MAX = ("refusal.false_refusal_rate", "calibration.ece")
ABOUT = ("Limits for `assistant eval --gate`: dotted paths into metrics.json. Re-set them from a run on the "
         "split they gate, e.g. `assistant eval --set evals/test.jsonl --backend extractive --write-thresholds "
         "evals/thresholds.json` (`evals/generated/test.jsonl` for `evals/thresholds-generated.json`) "
         f"(min = measured - {MARGIN}, max = measured + {MARGIN}, to 2 decimals; fabricated citations stay at max 0).")


def load_thresholds(path: str | Path) -> dict[str, dict[str, float]]:
    """The `min` and `max` limits of a thresholds file; raises ValueError when it is malformed."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such thresholds file") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: cannot read thresholds ({exc})") from None
    if not isinstance(raw, dict) or not set(raw) & {"min", "max"}:
        raise ValueError(f"{path}: expected an object with 'min' and/or 'max' maps")
    limits = {}
    for side in ("min", "max"):
        table = raw.get(side, {})
        if not isinstance(table, dict) or not all(isinstance(v, (int, float)) for v in table.values()):
            raise ValueError(f"{path}: '{side}' must map metric paths to numbers")
        limits[side] = {k: float(v) for k, v in table.items()}
    return limits


def metric_value(metrics: dict[str, Any], path: str) -> float | None:
    """The value at a dotted path such as `overall.retrieval.hit@5`; ValueError if there is none."""
    node: Any = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"unknown metric {path!r}")
        node = node[part]
    if node is not None and not isinstance(node, (int, float)):
        raise ValueError(f"{path!r} is not a number")
    return node


def check_gate(metrics: dict[str, Any], limits: dict[str, dict[str, float]]) -> list[str]:
    """One line per metric outside its limit (empty when the gate passes)."""
    failures = []
    for side, table in limits.items():
        for path, limit in table.items():
            value = metric_value(metrics, path)
            if value is None:
                failures.append(f"{path} was not measured (limit {side} {limit:g})")
            elif (side == "min" and value < limit) or (side == "max" and value > limit):
                word = "below the minimum" if side == "min" else "above the maximum"
                failures.append(f"{path} = {value:.4g}, {word} {limit:g}")
    return failures


def default_keys(metrics: dict[str, Any]) -> dict[str, list[str]]:
    """The metric paths a new thresholds file gates: the defaults this set measures, and the suite
    metrics of every suite it names."""
    suites = list(metrics.get("by_suite", {}))
    keys = {"min": [*DEFAULT_MIN, *(f"by_suite.{s}.{m}" for s in suites for m in SUITE_MIN)],
            "max": [*DEFAULT_MAX, *(f"by_suite.{s}.{m}" for s in suites for m in SUITE_MAX)]}
    return {side: [k for k in paths if _measured(metrics, k)] for side, paths in keys.items()}


def _measured(metrics: dict[str, Any], path: str) -> bool:
    try:
        return metric_value(metrics, path) is not None
    except ValueError:
        return False


def thresholds_from(metrics: dict[str, Any], keys: dict[str, list[str]] | None = None,
                    margin: float = MARGIN) -> dict[str, Any]:
    """Limits just under (min) or over (max) the measured figures, for the given metric paths
    (by default `default_keys`)."""
    keys = keys or default_keys(metrics)
    out: dict[str, Any] = {"_about": ABOUT, "min": {}, "max": {}}
    for side in ("min", "max"):
        for path in keys.get(side, []):
            if path in FIXED:
                continue
            value = metric_value(metrics, path)
            if value is None:
                continue
            if side == "min":
                out["min"][path] = max(0.0, math.floor((value - margin) * 100 + 1e-9) / 100)
            else:
                out["max"][path] = math.ceil((value + margin) * 100 - 1e-9) / 100
    for path, (side, limit) in FIXED.items():
        out[side][path] = limit
    return out


def write_thresholds(metrics: dict[str, Any], path: str | Path, margin: float = MARGIN) -> dict[str, Any]:
    """Write limits from `metrics` to `path`: the metric paths the file already gates, and the
    defaults for what `metrics` measures (so a suite new to the set gets gated too)."""
    path = Path(path)
    keys = default_keys(metrics)
    if path.exists():
        current = load_thresholds(path)
        keys = {side: list(dict.fromkeys([*current.get(side, {}), *keys.get(side, [])])) for side in ("min", "max")}
    thresholds = thresholds_from(metrics, keys, margin)
    path.write_text(json.dumps(thresholds, indent=2) + "\n", encoding="utf-8")
    return thresholds
