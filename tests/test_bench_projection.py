"""The benchmark's projection of the scale figures to 1M papers (benchmarks/bench.py)."""

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import bench


def _stages(sizes: list[int]) -> dict:
    """Server-mode stages whose figures follow known laws: memory and disk a + b·N, latency and
    start-up a + b·log10 N."""
    stages: dict = {}
    for n in sizes:
        log = math.log10(n)
        stages[f"synthetic_{n}"] = {"papers": n, "disk_mib": {"chroma": 0.02 * n, "keyword": 0.005 * n + 1}}
        stages[f"server_{n}"] = {
            "answer_warm": {"p50_ms": 10 + 4 * log, "p95_ms": 20 + 7 * log, "peak_rss_mib": 340 + 0.0006 * n},
            "first_answer": {"wall_s": 1.0 + 0.1 * log, "peak_rss_mib": 300.0},
            "server_peak_rss_mib": 100 + 0.0035 * n}
    return stages


def test_projection_recovers_the_laws_and_bounds_latency_by_a_line() -> None:
    p = bench.projection(_stages([10_000, 100_000, 300_000]), papers=1_000_000)
    figures = p["figures"]
    assert p["from_papers"] == [10_000, 100_000, 300_000]
    assert figures["process_rss_mib"]["projected"] == pytest.approx(340 + 600)
    assert figures["server_rss_mib"]["projected"] == pytest.approx(100 + 3500)
    assert figures["disk_mib"]["projected"] == pytest.approx(25_000 + 1)
    assert figures["answer_p95_ms"]["projected"] == pytest.approx(20 + 7 * 6)
    assert figures["answer_p95_ms"]["b_per_10x"] == pytest.approx(7)
    assert figures["first_answer_s"]["projected"] == pytest.approx(1.6)
    # A log-shaped figure extrapolated as a straight line overshoots: the pessimistic bound.
    for name in ("answer_p50_ms", "answer_p95_ms", "first_answer_s"):
        assert figures[name]["bound_linear"]["projected"] > figures[name]["projected"]
    assert bench.render_projection(p).startswith("projected to 1,000,000 papers from 10,000 / 100,000 / 300,000: "
                                                 "answer_p50_ms 34 (a + b*log10(N); a + b*N: ")


def test_no_projection_from_one_size() -> None:
    assert bench.projection(_stages([100_000])) == {}

