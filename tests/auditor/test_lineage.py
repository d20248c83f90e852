"""The graph rules: placement from the roots, cycles, families."""

from __future__ import annotations

from auditor.lineage import LineageGraph, family_of


def test_placement_takes_the_nearest_root_and_ignores_self_loops() -> None:
    graph = LineageGraph.from_edges(
        [
            ("a/1", "google/gemma-2b", "finetune"),
            ("a/2", "a/1", "quantized"),
            ("a/2", "meta-llama/Llama-3.1-8B", "merge"),
            ("a/3", "a/3", "finetune"),
        ]
    )
    placed = graph.place(["google/gemma-2b", "meta-llama/Llama-3.1-8B"])
    assert placed["a/1"].family == "gemma" and placed["a/1"].depth == 1
    assert placed["a/2"].depth == 1 and placed["a/2"].root == "meta-llama/Llama-3.1-8B"
    assert "a/3" not in placed


def test_deleted_models_break_the_chain() -> None:
    graph = LineageGraph.from_edges([("a/1", "r/phi-x", "finetune"), ("a/2", "a/1", "finetune")])
    assert set(graph.place(["r/phi-x"], members={"r/phi-x", "a/2"})) == {"r/phi-x"}


def test_cycles_are_found_and_walks_terminate() -> None:
    edges = [
        ("c/a", "r/llama", "finetune"),
        ("c/b", "c/a", "finetune"),
        ("c/a", "c/b", "finetune"),
        ("d/1", "d/3", "merge"),
        ("d/2", "d/1", "finetune"),
        ("d/3", "d/2", "finetune"),
        ("e/1", "r/llama", "finetune"),
    ]
    graph = LineageGraph.from_edges(edges)
    assert sorted(graph.cycles()) == [["c/a", "c/b"], ["d/1", "d/2", "d/3"]]
    assert set(graph.place(["r/llama"])) == {"r/llama", "c/a", "c/b", "e/1"}


def test_long_chains_do_not_recurse() -> None:
    chain = [(f"m/{i + 1}", f"m/{i}", "finetune") for i in range(50_000)] + [("m/0", "m/50000", "finetune")]
    graph = LineageGraph.from_edges(chain)
    assert len(graph.cycles()[0]) == 50_001


def test_family_of() -> None:
    assert family_of("google/gemma-2-2b-it") == "gemma"
    assert family_of("meta-llama/Llama-2-7b-chat-hf") == "llama"
    assert family_of("microsoft/Phi-3-mini-4k-instruct") == "phi"
    assert family_of("acme/custom") == "acme"
