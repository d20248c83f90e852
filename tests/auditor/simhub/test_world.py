"""The world builder: deterministic, realistic in shape, with every planted defect."""

from __future__ import annotations

import subprocess
import sys

import pytest

from auditor.simhub import WorldSpec, build_world
from auditor.simhub.server import truth_figures
from auditor.simhub.world import UNRELATED_ROOTS


def test_same_spec_same_world_in_another_process() -> None:
    script = (
        "from auditor.simhub import build_world, WorldSpec;"
        "w = build_world(WorldSpec(size=800, seed=4)); w.evolve(0.05, seed=1);"
        "t = w.truth(); print(len(t.nodes), sorted(t.edges)[:50], sorted(t.shas.items())[:50])"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


def test_shape_is_heavy_tailed_and_mostly_leaves() -> None:
    world = build_world(WorldSpec(size=20_000, seed=2))
    assert len(world.models) == 20_000
    truth = world.truth()
    figures = truth_figures(world)
    with_children = sum(1 for n in truth.nodes if world.children_count(n))
    assert with_children < 0.15 * len(truth.nodes)  # most models are leaves
    quantized = [n for n in truth.nodes if world.models[n].relation == "quantized"]
    assert sum(1 for n in quantized if world.children_count(n)) < 0.05 * len(quantized)
    downloads = sorted((world.models[n].downloads for n in truth.nodes), reverse=True)
    assert downloads[len(downloads) // 100] > 20 * downloads[len(downloads) // 2]  # heavy tail
    depths = _depths(world)
    assert max(depths.values()) >= 4  # several generations deep
    relations = {world.models[n].relation for n in truth.nodes}
    assert relations >= {"finetune", "adapter", "quantized", "merge"}
    assert figures["listing_lower_bound"] >= with_children


def test_defects_are_planted_and_the_unrelated_family_stays_out() -> None:
    world = build_world(WorldSpec(size=500, seed=1))
    truth = world.truth()
    assert (
        "defects/names-itself" in truth.nodes
        and "defects/names-itself" in world.models["defects/names-itself"].declared
    )
    assert "defects/cycle-a" in world.models["defects/cycle-b"].declared
    assert "defects/cycle-b" in world.models["defects/cycle-a"].declared
    assert "defects/merge-with-ghost" in truth.nodes and "ghost/deleted-model" not in world.models
    for outside in (*UNRELATED_ROOTS, "defects/no-base-model", "defects/island-a", "defects/only-itself"):
        assert outside in world.models and outside not in truth.nodes
    assert any(m.family == "mistral" and m.declared for m in world.models.values())


def test_evolve_makes_every_kind_of_change() -> None:
    world = build_world(WorldSpec(size=2000, seed=3))
    before = world.truth()
    changes = world.evolve(0.02, seed=1)
    after = world.truth()
    assert set(changes.new) & after.nodes
    assert all(after.shas[r] != before.shas[r] for r in changes.repushed if r in after.nodes and r in before.nodes)
    assert not set(changes.deleted) & after.nodes
    assert set(changes.redeclared) & (after.nodes ^ before.nodes)


@pytest.mark.parametrize("text", ["size=10", "size=300000", "bogus=1", "size"])
def test_bad_world_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WorldSpec.parse(text)


def _depths(world):  # type: ignore[no-untyped-def]
    from auditor.lineage import LineageGraph

    graph = LineageGraph.from_edges(world.truth().edges)
    return {n: p.depth for n, p in graph.place(world.roots).items()}
