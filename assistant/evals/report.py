"""Eval reports: Markdown tables, the per-question failure list, JSON files and PNG charts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from ..corpus.parse import normalize_title

#: (column header, path inside one group of metrics) for the main table.
COLUMNS = (
    ("hit@1", "retrieval.hit@1"), ("hit@5", "retrieval.hit@5"), ("MRR@10", "retrieval.mrr@10"),
    ("R@10", "retrieval.recall@10"), ("kw acc", "answers.keyword_accuracy"), ("cite P", "answers.citation_precision"),
    ("cite R", "answers.citation_recall"), ("strict", "answers.strict_accuracy"),
    ("ALCE R", "grounding.citation_recall"), ("ALCE P", "grounding.citation_precision"),
    ("uncited", "grounding.uncited_sentences"), ("ungrounded", "grounding.ungrounded_answers"),
    ("refusal", "refusal.refusal_rate"), ("false ref", "refusal.false_refusal_rate"), ("ECE", "calibration.ece"),
    ("removed", "answers.removed_markers"), ("fabricated", "answers.fabricated_citations"),
)
#: Metrics drawn in the charts (all in 0..1, higher is better).
CHART_COLUMNS = ("hit@1", "hit@5", "MRR@10", "R@10", "kw acc", "cite P", "cite R", "strict", "ALCE R", "ALCE P",
                 "refusal")
DEFINITIONS = """\
- **hit@1 / hit@5**: a gold paper is the first / among the first 5 retrieved (retrieval with top_k=10).
- **MRR@10**: 1 / rank of the first gold paper in the top 10 (0 if absent).
  **R@10**: share of gold papers in the top 10.
- **kw acc**: the answer has every answer keyword (questions with keywords; a refusal scores 0).
- **cite P**: share of cited papers that are gold (answers that cite). **cite R**: share of gold papers cited
  (refusal = 0). **strict**: not refused, every keyword, every gold paper cited.
- **ALCE R**: share of answer sentences supported by their cited passages. **ALCE P**: share of citations that
  support their sentence alone or are needed for its support. **uncited**: share of sentences without a citation.
  **ungrounded**: share of answers (refusals aside) in which no sentence is supported by a source it cites.
- **refusal**: unanswerable questions refused. **false ref**: answerable questions refused.
- **ECE**: expected calibration error of `Answer.confidence` against "the evidence answers" (10 bins; lower is
  better); calibration.png has the reliability diagram and the risk-coverage curve.
- **removed**: markers the backend wrote that point outside the sources, removed before the answer is shown.
- **fabricated**: in the answers as shown, markers outside the sources and titles not in the collection (a
  count; must be 0).
- Full definitions: the docstring of `assistant/metrics.py` and docs/evals.md."""


def _get(group: dict[str, Any], path: str) -> Any:
    node: Any = group
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def fmt(value: Any) -> str:
    """A table cell: '–' for undefined, 2 decimals for rates, integers as they are."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def fmt_ms(value: float | None) -> str:
    """Milliseconds as a whole number ('–' for undefined)."""
    return "–" if value is None else f"{value:.0f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table with padded columns (readable in a terminal too)."""
    cells = [list(headers)] + [[fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _groups(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    suites = [(f"suite {name}", g) for name, g in payload.get("by_suite", {}).items()]
    return [*payload["by_kind"].items(), *suites, ("overall", payload["overall"])]


def metrics_table(payload: dict[str, Any]) -> str:
    """Every metric, one row per kind, one per suite (when the set has suites) and one overall."""
    rows = [[name, g["n"], *(_get(g, path) for _, path in COLUMNS)] for name, g in _groups(payload)]
    return markdown_table(["group", "n", *(h for h, _ in COLUMNS)], rows)


def latency_table(payload: dict[str, Any]) -> str:
    """p50 / p95 milliseconds per stage, one row per kind and one overall."""
    stages = list(payload["overall"]["latency_ms"])
    rows = [[name, *(f"{fmt_ms(g['latency_ms'][s]['p50'])} / {fmt_ms(g['latency_ms'][s]['p95'])}" for s in stages)]
            for name, g in _groups(payload)]
    return markdown_table(["kind", *(f"{s} p50 / p95 ms" for s in stages)], rows)


def print_table(table: str, stream: TextIO) -> None:
    """Print a table with a blank line after it."""
    print(table + "\n", file=stream)


def failure_reasons(record: dict[str, Any]) -> list[str]:
    """Why one question's result falls short (empty when it is right in every respect)."""
    s = record["scores"]
    gold = {normalize_title(t): t for t in record["gold_titles"]}
    cited = {normalize_title(t): t for t in record["cited"]}
    reasons = []
    if record["kind"] == "unanswerable":
        if not record["refused"]:
            reasons.append("answered an unanswerable question" + (f", citing {len(cited)} paper(s)" if cited else ""))
    else:
        if record["refused"]:
            reasons.append("false refusal")
        if s["gold_rank"] is None or s["gold_rank"] > 5:
            where = f"at rank {s['gold_rank']}" if s["gold_rank"] else "not in the top 10"
            reasons.append(f"first gold paper {where}")
        if s["missing_keywords"] and not record["refused"]:
            reasons.append("missing keyword(s): " + ", ".join(repr(k) for k in s["missing_keywords"]))
        if not record["refused"]:
            reasons += [f"gold paper not cited: {t!r}" for k, t in gold.items() if k not in cited]
            reasons += [f"cited a paper that is not gold: {t!r}" for k, t in cited.items() if k not in gold]
    if record["fabricated"]:
        reasons.append(f"{record['fabricated']} fabricated citation(s)")
    unsupported = [x for x in record["sentences"] if not x["supported"]]
    if unsupported and not record["refused"]:
        reasons.append(f"{len(unsupported)} of {len(record['sentences'])} sentence(s) not supported by their citations")
    return reasons


def failures_markdown(payload: dict[str, Any]) -> str:
    """The per-question failure list."""
    lines = []
    for record in payload["questions"]:
        reasons = failure_reasons(record)
        if reasons:
            answer = " ".join(record["answer"].split())
            answer = answer if len(answer) <= 240 else answer[:239] + "…"
            lines.append(f"- **{record['id']}** ({record['kind']}) {record['question']}\n"
                         f"  - {'; '.join(reasons)}\n  - answer: {answer}")
    return "\n".join(lines) if lines else "None."


def report_markdown(payload: dict[str, Any]) -> str:
    """The whole report.md."""
    c = payload["config"]
    failing = sum(bool(failure_reasons(r)) for r in payload["questions"])
    gate = payload.get("gate")
    gate_text = ""
    if gate:
        gate_text = "\n## Gate\n\n" + (f"Passed ({gate['file']})." if gate["passed"] else
                                       "FAILED:\n" + "\n".join(f"- {f}" for f in gate["failures"])) + "\n"
    return (f"# Eval report: {c.get('set', '')}\n\n"
            f"backend `{c['backend']}`, retrieval `{c['retrieval']}`, top_k {c['top_k']}, "
            f"{c['questions']} questions, {c['created']}.\n\n"
            f"## Metrics\n\n{metrics_table(payload)}\n\n{DEFINITIONS}\n\n"
            f"## Latency\n\n{latency_table(payload)}\n{gate_text}\n"
            f"## Failures ({failing} of {len(payload['questions'])} questions)\n\n{failures_markdown(payload)}\n")


def bar_chart(series: dict[str, dict[str, float | None]], path: Path, title: str) -> None:
    """Grouped bars: one group per metric of CHART_COLUMNS, one bar per series; saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(CHART_COLUMNS))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(11.0, len(CHART_COLUMNS) * 0.25 * len(series)), 4.8))
    for i, (name, values) in enumerate(series.items()):
        heights = [values.get(m) or 0.0 for m in CHART_COLUMNS]
        ax.bar(x - 0.4 + width * (i + 0.5), heights, width, label=name)
    ax.set_xticks(x, CHART_COLUMNS, rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score (higher is better)")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def calibration_chart(calibration: dict[str, Any], path: Path, title: str) -> None:
    """Reliability diagram (confidence vs share whose evidence answers) beside the risk-coverage curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10.0, 4.4))
    bins = calibration["bins"]
    left.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    left.bar([(b["low"] + b["high"]) / 2 for b in bins], [b["accuracy"] for b in bins], width=0.09, alpha=0.6,
             label="share whose evidence answers")
    left.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", label="bin mean confidence")
    for b in bins:
        left.annotate(str(b["n"]), ((b["low"] + b["high"]) / 2, b["accuracy"]), ha="center", va="bottom",
                      fontsize="x-small")
    left.set(xlim=(0, 1), ylim=(0, 1.05), xlabel="confidence", ylabel="share whose evidence answers",
             title="reliability (n per bin)")
    left.legend(fontsize="small", loc="upper left")
    points = calibration["risk_coverage"]
    right.plot([c for c, _ in points], [r for _, r in points])
    right.set(xlim=(0, 1), ylim=(0, max([r for _, r in points] + [0.1]) * 1.1), xlabel="coverage (share answered)",
              ylabel="risk (share wrongly answered)", title="risk-coverage")
    right.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _chart_values(group: dict[str, Any]) -> dict[str, float | None]:
    paths = dict(COLUMNS)
    return {name: _get(group, paths[name]) for name in CHART_COLUMNS}


def write_report(out: Path, payload: dict[str, Any]) -> None:
    """Write metrics.json, report.md and metrics.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report_markdown(payload), encoding="utf-8")
    c = payload["config"]
    title = f"{Path(c.get('set', '')).name}: {c['backend']} / {c['retrieval']}"
    bar_chart({name: _chart_values(g) for name, g in _groups(payload)}, out / "metrics.png", title)
    if payload.get("calibration", {}).get("bins"):
        calibration_chart(payload["calibration"], out / "calibration.png", title)


def comparison_table(runs: Sequence[dict[str, Any]]) -> str:
    """Overall metrics and latency, one row per (backend, retrieval) run and per suite of each run."""
    rows = []
    for run in runs:
        c = run["config"]
        for name, group in [("all", run["overall"]), *run.get("by_suite", {}).items()]:
            total = group["latency_ms"]["total"]
            rows.append([c["backend"], c["retrieval"], name, *(_get(group, path) for _, path in COLUMNS),
                         fmt_ms(total["p50"]), fmt_ms(total["p95"])])
    return markdown_table(["backend", "retrieval", "suite", *(h for h, _ in COLUMNS), "p50 ms", "p95 ms"], rows)


def write_comparison(out: Path, runs: Sequence[dict[str, Any]]) -> str:
    """Write compare.json, compare.md and compare.png under `out`; returns the Markdown table."""
    out.mkdir(parents=True, exist_ok=True)
    table = comparison_table(runs)
    summary = [{"config": r["config"], "overall": r["overall"], "by_kind": r["by_kind"],
                "by_suite": r.get("by_suite", {})} for r in runs]
    (out / "compare.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    set_name = runs[0]["config"].get("set", "") if runs else ""
    (out / "compare.md").write_text(f"# Comparison: {set_name}\n\nOverall metrics per run.\n\n{table}\n\n"
                                    f"{DEFINITIONS}\n", encoding="utf-8")
    bar_chart({f"{r['config']['backend']}/{r['config']['retrieval']}": _chart_values(r["overall"]) for r in runs},
              out / "compare.png", f"{Path(set_name).name}: retrieval modes and backends")
    return table
