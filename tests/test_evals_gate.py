"""The citation evals on the real pipeline: the CI gate on the hand-written and the generated test
splits (every suite), and the CLI's reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant import Assistant, Settings
from assistant.cli import main
from assistant.evals.dataset import load_eval_set
from assistant.evals.gate import check_gate, load_thresholds
from assistant.evals.run import run_set

ROOT = Path(__file__).resolve().parents[1]
TEST_SET = ROOT / "evals" / "test.jsonl"
THRESHOLDS = ROOT / "evals" / "thresholds.json"


@pytest.mark.parametrize(("eval_set", "thresholds"), [
    (TEST_SET, THRESHOLDS),
    (ROOT / "evals" / "generated" / "test.jsonl", ROOT / "evals" / "thresholds-generated.json"),
], ids=["handwritten", "generated"])
def test_gate_passes_on_the_test_split(assistant: Assistant, eval_set: Path, thresholds: Path) -> None:
    """`assistant eval --set <test split> --gate <its thresholds>`, in process."""
    questions = load_eval_set(eval_set)
    payload = run_set(assistant, questions, backend="extractive", retrieval="hybrid", progress=False)
    assert payload["overall"]["n"] == len(questions) == len(payload["questions"])
    assert payload["overall"]["answers"]["fabricated_citations"] == 0
    limits = load_thresholds(thresholds)
    suites = set(payload["by_suite"])
    assert all(any(k.startswith(f"by_suite.{s}.") for k in limits["min"]) for s in suites)  # every suite gated
    failures = check_gate(payload, limits)
    assert not failures, "gate failed:\n" + "\n".join(failures)


@pytest.fixture
def small_set(tmp_path: Path) -> Path:
    """Three questions of the test split: one answerable per kind that has gold, one unanswerable."""
    rows = [json.loads(line) for line in TEST_SET.read_text(encoding="utf-8").splitlines()]
    picked = [next(r for r in rows if r["kind"] == kind) for kind in ("numeric", "multi", "unanswerable")]
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in picked), encoding="utf-8")
    return path


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ASSISTANT_BACKEND", "ASSISTANT_RETRIEVAL", "ASSISTANT_TOP_K", "OPENAI_API_KEY", "OPENAI_BASE_URL",
                "OLLAMA_HOST"):
        monkeypatch.delenv(var, raising=False)


def test_cli_writes_reports_and_fails_an_impossible_gate(
        settings: Settings, assistant: Assistant, small_set: Path, tmp_path: Path, clean_env: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({"min": {"overall.retrieval.hit@1": 1.01}, "max": {}}))
    out = tmp_path / "out"
    status = main(["eval", "--set", str(small_set), "--index-dir", str(settings.index_dir), "--out", str(out),
                   "--gate", str(strict), "--json"])
    captured = capsys.readouterr()
    assert status == 1
    assert "overall.retrieval.hit@1" in captured.err and "gate: FAILED" in captured.err
    printed = json.loads(captured.out)
    assert printed["config"]["backend"] == "extractive" and printed["overall"]["n"] == 3
    assert printed["gate"]["passed"] is False
    saved = json.loads((out / "metrics.json").read_text())
    assert [q["id"] for q in saved["questions"]] == [json.loads(x)["id"] for x in small_set.read_text().splitlines()]
    report = (out / "report.md").read_text()
    assert "| overall" in report and "## Failures" in report and "FAILED" in report
    assert (out / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_compare_runs_every_retrieval_mode(
        settings: Settings, assistant: Assistant, small_set: Path, tmp_path: Path, clean_env: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "compare"
    assert main(["eval", "--set", str(small_set), "--index-dir", str(settings.index_dir), "--out", str(out),
                 "--compare"]) == 0
    table = capsys.readouterr().out
    runs = json.loads((out / "compare.json").read_text())
    assert [(r["config"]["backend"], r["config"]["retrieval"]) for r in runs] == [
        ("extractive", "hybrid"), ("extractive", "dense"), ("extractive", "bm25")]
    assert all(f"| extractive | {mode}" in table for mode in ("hybrid", "dense", "bm25"))
    assert "| extractive | bm25" in (out / "compare.md").read_text()
    assert (out / "compare.png").stat().st_size > 0 and (out / "extractive-bm25" / "metrics.json").exists()


def test_cli_rejects_a_malformed_set(settings: Settings, tmp_path: Path, clean_env: None,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "kind": "trivia"}\n')
    assert main(["eval", "--set", str(bad), "--index-dir", str(settings.index_dir)]) == 2
    assert "invalid kind 'trivia'" in capsys.readouterr().err
