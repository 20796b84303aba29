"""Fit the answerer's confidence model: `python evals/fit_confidence.py` (after `assistant index`).

1. Features (`assistant/answering/evidence.py` FEATURES) and labels for every question of the
   train splits, generated (`evals/generated/train.jsonl`) and hand-written (`evals/train.jsonl`):
   label 1 when the evidence answers the question (`assistant.evals.metrics.evidence_answers`:
   answerable, its top retrieved paper is a gold one, the gold passages state the keywords).
2. An L2-regularised logistic regression over standardised features (numpy, Newton steps), each
   train file weighted to count as much as the other: fit on templates alone, the model was
   under-confident on questions people write. Caps: every yes/no feature that fires on at least
   CAP_MIN_FIRES train questions of which at most CAP_MAX_RATE (weighted, add-one smoothed) are
   answered by the evidence caps the probability at that share when it fires.
3. The refusal threshold chosen on dev: the highest threshold that refuses at most
   TARGET_FALSE_REFUSAL of the answerable questions of each dev file (generated and hand-written).
Test is never read. Writes `assistant/answering/confidence_model.json` with the features'
definitions, the weights and what was measured on train and dev.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from assistant import Assistant, Settings  # noqa: E402
from assistant.answering.evidence import FEATURES, MODEL_FILE, ConfidenceModel, EvidenceAssessor  # noqa: E402
from assistant.evals.dataset import EvalQuestion, load_eval_set  # noqa: E402
from assistant.evals.metrics import evidence_answers  # noqa: E402

TRAIN = [HERE / "generated" / "train.jsonl", HERE / "train.jsonl"]
DEV = [HERE / "generated" / "dev.jsonl", HERE / "dev.jsonl"]
TARGET_FALSE_REFUSAL = 0.02
L2 = 1.0
CAP_MAX_RATE = 0.05
CAP_MIN_FIRES = 20
VERSION = 2


def observe(assistant: Assistant, assessor: EvidenceAssessor,
            questions: list[EvalQuestion]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix, labels and answerable flags for questions, through the real retrieval."""
    rows, labels, answerable = [], [], []
    for q in questions:
        sources = assistant.retrieve(q.question)
        assistant.load_sentence_vectors(sources)  # as answering does: the vectors the index stored
        evidence = assessor.assess(q.question, sources)
        rows.append([evidence.features[name] for name in FEATURES])
        labels.append(float(evidence_answers(sources, q.gold_titles, q.answer_keywords)))
        answerable.append(q.answerable)
    return np.array(rows), np.array(labels), np.array(answerable)


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2,
                 sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Weights and bias of an L2-regularised logistic regression (bias not penalised)."""
    design = np.hstack([x, np.ones((len(x), 1))])
    s = np.ones(len(x)) if sample_weight is None else sample_weight
    w = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[-1] = 0.0
    for _ in range(50):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -30, 30)))
        gradient = design.T @ (s * (p - y)) + penalty * w
        hessian = design.T @ (design * (s * p * (1 - p))[:, None]) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def choose_threshold(p: np.ndarray, answerable: np.ndarray, target: float = TARGET_FALSE_REFUSAL) -> float:
    """The highest threshold that refuses at most `target` of the answerable questions."""
    scores = np.sort(p[answerable])
    allowed = int(np.floor(target * len(scores)))
    return float(scores[allowed]) if allowed < len(scores) else 0.5


def fit_caps(x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray) -> dict[str, float]:
    """For each yes/no feature that fires on at least `CAP_MIN_FIRES` questions, the share of those
    the evidence answers (weighted, add-one smoothed: a feature that never fired on an answered
    question still leaves a chance), kept when at most `CAP_MAX_RATE`."""
    caps = {}
    for j, name in enumerate(FEATURES):
        fires = x[:, j] == 1.0
        if not np.isin(x[:, j], (0.0, 1.0)).all() or fires.sum() < CAP_MIN_FIRES:
            continue
        rate = float((sample_weight[fires] @ y[fires] + 1.0) / (sample_weight[fires].sum() + 2.0))
        if rate <= CAP_MAX_RATE:
            caps[name] = rate
    return caps


def balanced_weights(groups: np.ndarray) -> np.ndarray:
    """Sample weights under which every training file counts as much as any other: the generated
    questions outnumber the hand-written ones and come from a few templates."""
    names, counts = np.unique(groups, return_counts=True)
    per_group = dict(zip(names, len(groups) / (len(names) * counts)))
    return np.array([per_group[g] for g in groups])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-dir", default=None)
    args = parser.parse_args(argv)
    assistant = Assistant(Settings.from_env(index_dir=args.index_dir))
    assistant.ensure_index()
    assessor = EvidenceAssessor(assistant.encoder.encode, assistant.index.keyword,
                                ConfidenceModel(0, list(FEATURES), [0.0] * len(FEATURES), [1.0] * len(FEATURES),
                                                [0.0] * len(FEATURES), 0.0, 0.5, {}))
    train = [(str(path.relative_to(HERE)), q) for path in TRAIN for q in load_eval_set(path)]
    dev = [(str(path.relative_to(HERE)), q) for path in DEV for q in load_eval_set(path)]
    x, y, _ = observe(assistant, assessor, [q for _, q in train])
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    sample_weight = balanced_weights(np.array([str(p) for p, _ in train]))
    weights, bias = fit_logistic((x - mean) / scale, y, sample_weight=sample_weight)
    caps = fit_caps(x, y, sample_weight)
    model = ConfidenceModel(VERSION, list(FEATURES), mean.tolist(), scale.tolist(), weights.tolist(), bias, 0.5, caps)
    xd, yd, answerable = observe(assistant, assessor, [q for _, q in dev])
    p_dev = np.array([model.probability(dict(zip(FEATURES, row))) for row in xd])
    # Every dev file must keep its false refusals under the target, not just their union.
    sets = np.array([str(p) for p, _ in dev])
    model.threshold = min(choose_threshold(p_dev[sets == name], answerable[sets == name]) for name in set(sets))
    refused = p_dev < model.threshold
    report = {
        "train_questions": len(train), "train_positive": int(y.sum()),
        "dev_questions": len(dev), "dev_false_refusal": round(float(refused[answerable].mean()), 4),
        "dev_refusal_unanswerable": round(float(refused[~answerable].mean()), 4),
        "dev_brier": round(float(np.mean((p_dev - yd) ** 2)), 4),
    }
    payload = {
        "about": "Confidence model of the extractive answerer; fit by evals/fit_confidence.py on "
                 "evals/generated/train.jsonl and evals/train.jsonl, threshold chosen on dev. "
                 "Do not edit by hand.",
        "version": VERSION, "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "features": [{"name": n, "definition": d} for n, d in FEATURES.items()],
        "mean": [round(v, 6) for v in mean], "scale": [round(v, 6) for v in scale],
        "weights": [round(v, 6) for v in weights], "bias": round(bias, 6),
        "caps": {name: round(cap, 6) for name, cap in caps.items()},
        "threshold": round(model.threshold, 6), "target_false_refusal": TARGET_FALSE_REFUSAL, "fit": report,
    }
    MODEL_FILE.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=1))
    for name, weight in sorted(zip(FEATURES, weights), key=lambda t: -abs(t[1])):
        print(f"{name:>18} {weight:+.3f}")
    print(f"caps {caps}")
    print(f"threshold {model.threshold:.3f} -> {MODEL_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
