"""LaTeX residue in titles and abstracts becomes Unicode at parse time, ordinary text is left
alone, the raw text is kept in metadata, and an index built with other rules is re-built.
Inputs are snippets of the bundled pages (see assistant/data/corpus/)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant import Paper, Settings
from assistant.corpus.normalize import NORMALIZER_VERSION, normalize_latex
from assistant.corpus.parse import load_corpus, normalize_title
from assistant.indexing import chunking
from assistant.indexing.build import _flat_metadata
from assistant.indexing.index import PaperIndex
from assistant.text import numbers

REWRITTEN = [
    # "times" glued to numbers
    ("it can support up to 6times larger batch sizes", "it can support up to 6× larger batch sizes"),
    ("throughput by up to 3.04times on an A100 GPU", "throughput by up to 3.04× on an A100 GPU"),
    ("decoding latency by 2.4-2.9times for the fixed numbers", "decoding latency by 2.4-2.9× for the fixed numbers"),
    ("at the highest resolution (1152times1152), FastVLM", "at the highest resolution (1152×1152), FastVLM"),
    ("by 1.18times-1.22times on 1458 MoE layers", "by 1.18×-1.22× on 1458 MoE layers"),
    ("extends the context length by times100 times", "extends the context length by ×100 times"),
    ("a $3 \\times 3$ kernel", "a 3 × 3 kernel"),
    # superscripts, with or without $…$ and braces
    ("MoE$^2$: Optimizing Collaborative Inference", "MoE²: Optimizing Collaborative Inference"),
    ("Mixture-of-Edge-Experts (MoE^2), a novel", "Mixture-of-Edge-Experts (MoE²), a novel"),
    ("S^{2}FT: Efficient, Scalable and Generalizable", "S²FT: Efficient, Scalable and Generalizable"),
    ("time complexity from O(T^2) to O(T log T)", "time complexity from O(T²) to O(T log T)"),
    ("O(n) memory and sub-O(n^2) pre-filling", "O(n) memory and sub-O(n²) pre-filling"),
    ("sub-networks (> 10^{19}) that can fit", "sub-networks (> 10¹⁹) that can fit"),
    ("poly(log(n),log(k),epsilon^{-1}). However", "poly(log(n),log(k),epsilon⁻¹). However"),
    ("matrix D^{-1} exp(QK^top) V where", "matrix D⁻¹ exp(QKᵀ) V where"),
    ("pretrained weights W^star, and adapter matrices", "pretrained weights W*, and adapter matrices"),
    ("an algorithm with O(log^{*}(n))-memory", "an algorithm with O(log*(n))-memory"),
    # exponents without superscript characters stay readable
    ("achieves O(K^{1/3} T^{2/3}log(K)) regret", "achieves O(K^(1/3) T^(2/3)log(K)) regret"),
    ("attention matrix in n^{1+o(1)} time", "attention matrix in n^(1+o(1)) time"),
    # subscripts
    ("energy-curvature tensor G_{LM} to replace", "energy-curvature tensor G_LM to replace"),
    # marks
    ("8 Intel^circledR Gaudi^circledR 2 accelerators", "8 Intel® Gaudi® 2 accelerators"),
    ("the latest Intel^circledR Core^{tiny TM} Ultra", "the latest Intel® Core™ Ultra"),
    # text-mode commands
    ("Token Recycling requires \\textless2MB of additional storage",
     "Token Recycling requires <2MB of additional storage"),
    ("accuracy \\textgreater 90%", "accuracy >90%"),
    ("Inference Scaling $\\scriptsize\\mathtt{F}$Laws: The Limits", "Inference Scaling FLaws: The Limits"),
    ("optimization algorithm, Lion (Evo\\textbf{Lved Sign Momentum}). It is",
     "optimization algorithm, Lion (EvoLved Sign Momentum). It is"),
    ("Our code is available at {\\small \\url{ https://github.com/yanyanSann/PromptTPP}}, by integrating",
     "Our code is available at https://github.com/yanyanSann/PromptTPP, by integrating"),
    ("D = diag( exp(QK^top) {bf 1}_n ).", "D = diag( exp(QKᵀ) 1_n )."),
    ("a 2.4times speedup and 30\\% reduction in GPU memory", "a 2.4× speedup and 30% reduction in GPU memory"),
    ("efficient shift\\&add operations", "efficient shift&add operations"),
    ("integrates both Feed-Forward Network~(FFN) and zero-computation experts",
     "integrates both Feed-Forward Network (FFN) and zero-computation experts"),
    ("We then present M\\'elange, a framework", "We then present Mélange, a framework"),
    ("and a na\\\"ive NPU+PIM integrated accelerator", "and a naïve NPU+PIM integrated accelerator"),
]

UNCHANGED = [
    "NanoFlow runs three times faster, sometimes at times of peak load",
    "a kernel-level speedup of 2.88× over cuBLAS and a 2.02 times speedup",
    "we define a new n times d size matrix",
    "with the optimal tilde Omega(T^(1/3)) times larger regret",
    "Code: https://github.com/locuslab/scaling_laws_data_filtering and https://example.org/run3times/a^{2}",
    "adaptations (e.g., W_Q, W_V, and W_K) within block_out and block_lse",
    "H_2O: Heavy-Hitter Oracle cuts CO_2 emission of L_0 PAT_Pruning-Aware-Tuning",
    "Mixtral 8x7B with a 1.91x throughput boost",
    "an accuracy improvement of up to ~9%, large (~billion parameters) models",
    "it costs $5 per hour, from $3 to $4, or $5-$10 in total",
    "MoE²: Optimizing Collaborative Inference",
]


@pytest.mark.parametrize(("raw", "clean"), REWRITTEN, ids=[r for r, _ in REWRITTEN])
def test_latex_residue_becomes_unicode(raw: str, clean: str) -> None:
    assert normalize_latex(raw) == clean


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert normalize_latex(text) == text


def test_hostile_input_is_normalised_in_linear_time() -> None:
    import time

    started = time.perf_counter()
    for text in ("$" + "_" * 200_000, ("$ " + "^" * 50) * 20_000, "^{" * 200_000, "{\\small " * 100_000):
        normalize_latex(text)
    assert time.perf_counter() - started < 5


def test_the_bundled_corpus_is_left_without_residue(bundled_papers: list[Paper]) -> None:
    residue = re.compile(r"\dtimes|\$|\^\{|\^[0-9]|\\[A-Za-z%&]|circledR|\^top|\^star|_\{")
    for paper in bundled_papers:
        for text in (paper.title, paper.abstract):
            assert not residue.search(text), text
            assert normalize_latex(text) == text, "normalising again changes nothing"


def test_moe2_written_two_ways_is_one_paper(bundled_papers: list[Paper]) -> None:
    moe2 = [p for p in bundled_papers if "optimizing collaborative inference for edge" in normalize_title(p.title)]
    assert len(moe2) == 1
    (paper,) = moe2
    assert paper.title == "MoE²: Optimizing Collaborative Inference for Edge Large Language Models"
    assert {prov.split(":")[0] for prov in paper.provenance} == {"000_df9bc1e58026004c.txt",
                                                                 "004_d8a246cad2aaf4f7.txt"}
    assert paper.metadata["raw_title"].startswith("MoE$^2$:")
    assert "MoE²" in paper.abstract and "MoE^2" in paper.metadata["raw_abstract"]


def test_raw_text_is_kept_only_when_changed_for_every_format(tmp_path: Path) -> None:
    title, abstract = "S^{2}FT: Sparse Fine-Tuning", "S^{2}FT trains 3times faster with \\textless2MB extra."
    (tmp_path / "page.txt").write_text(f"Daily Papers\n\nMar 14\n\n{title}\n\n{abstract}\n\n"
                                       "Plain Title\n\nA plain abstract, three times shorter.\n")
    (tmp_path / "a.jsonl").write_text(json.dumps({"title": title.replace("S^", "J^"), "abstract": abstract}) + "\n")
    (tmp_path / "b.csv").write_text(f'title,abstract\n"{title.replace("S^", "C^")}","{abstract}"\n')
    papers = {p.title: p for p in load_corpus([tmp_path], include_bundled=False).papers}
    assert set(papers) == {"S²FT: Sparse Fine-Tuning", "J²FT: Sparse Fine-Tuning", "C²FT: Sparse Fine-Tuning",
                           "Plain Title"}
    for name in ("S", "J", "C"):
        paper = papers[f"{name}²FT: Sparse Fine-Tuning"]
        assert paper.abstract == "S²FT trains 3× faster with <2MB extra."
        assert paper.metadata["raw_title"] == f"{name}^{{2}}FT: Sparse Fine-Tuning"
        assert paper.metadata["raw_abstract"] == abstract
    plain = papers["Plain Title"]
    assert "raw_title" not in plain.metadata and "raw_abstract" not in plain.metadata


def test_a_raw_field_in_user_records_is_not_taken_for_ours(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"title": "Plain", "abstract": "Plain text.",
                                                  "raw_title": "forged"}) + "\n")
    result = load_corpus([tmp_path], include_bundled=False)
    assert result.papers[0].metadata == {}
    assert any("raw_title" in p.message for p in result.problems)


def test_chunk_metadata_keeps_raw_title_but_not_raw_abstract() -> None:
    paper = Paper("p1", "MoE²: X", "MoE² does y.", {"raw_title": "MoE$^2$: X", "raw_abstract": "MoE^2 does y."},
                  ["page.txt:3"])
    flat = _flat_metadata(paper)
    assert flat["raw_title"] == "MoE$^2$: X"
    assert "raw_abstract" not in flat


def test_numbers_written_with_times_sign_match_x() -> None:
    assert numbers("up to 6× larger") == numbers("up to 6x larger") == numbers("up to 6times larger") == {"6x"}
    assert numbers("(1152×1152)") == {"1152x", "1152"}


def test_an_index_built_with_other_rules_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The normaliser's version is part of the chunking id: an index built before a change of
    rules is detected as mismatched and re-built, with the normalised text and raw title."""
    (tmp_path / "a.jsonl").write_text(json.dumps({"title": "MoE$^2$: Edge Experts",
                                                  "abstract": "MoE^2 serves 6times more users."}) + "\n")
    settings = Settings.from_env(env={}, index_dir=tmp_path / "index", include_bundled=False)
    assert NORMALIZER_VERSION in chunking.chunking_id(settings.chunk_size, settings.chunk_overlap)
    with monkeypatch.context() as patch:
        patch.setattr(chunking, "NORMALIZER_VERSION", "older-rules")
        first = PaperIndex(settings).build([tmp_path / "a.jsonl"], progress=False)
    assert first.added == first.chunks and first.rebuilt_because is None
    assert "older-rules" in (PaperIndex(settings).store.mismatch() or "")

    again = PaperIndex(settings).build(progress=False)  # the file is remembered as a source
    assert again.rebuilt_because is not None and "chunking" in again.rebuilt_because
    assert again.added == again.chunks == first.chunks and again.unchanged == 0
    store = PaperIndex(settings).store
    assert store.mismatch() is None
    got = store.collection.get(include=["documents", "metadatas"])
    assert got["documents"] == ["MoE² serves 6× more users."]
    assert got["metadatas"][0]["title"] == "MoE²: Edge Experts"
    assert got["metadatas"][0]["raw_title"] == "MoE$^2$: Edge Experts"
    assert "raw_abstract" not in got["metadatas"][0]
    assert PaperIndex(settings).build(progress=False).rebuilt_because is None
