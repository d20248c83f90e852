"""The world builder: deterministic, realistic in shape, with every planted defect."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest

from auditor.simhub import WorldSpec, build_world
from auditor.simhub.server import truth_figures
from auditor.simhub.world import UNRELATED_ROOTS, World

# The roots the worlds below were first built with, spelled out so that an edit of the auditor's
# default roots does not change what these tests pin.
PAPER_ROOTS = (
    "google/gemma-2b",
    "google/gemma-2b-it",
    "google/gemma-2-2b",
    "google/gemma-2-2b-it",
    "meta-llama/Llama-2-7b-hf",
    "meta-llama/Llama-2-7b-chat-hf",
    "meta-llama/Llama-3.1-8B",
    "meta-llama/Llama-3.1-8B-Instruct",
    "microsoft/Phi-3-mini-4k-instruct",
    "microsoft/Phi-3.5-mini-instruct",
)


def _world_digest(world: World) -> str:
    digest = hashlib.sha256()
    for r in world.models.values():
        fields = (
            r.repo_id,
            r.declared,
            r.relation,
            r.family,
            r.downloads,
            r.likes,
            r.gated,
            r.created_at.isoformat(),
            r.sha,
        )
        digest.update(repr(fields).encode())
    return digest.hexdigest()[:16]


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


def test_existing_specs_build_the_worlds_they_always_built() -> None:
    # Digests taken before `tree` existed: a spec without it must keep building the same world.
    world = build_world(WorldSpec(size=800, seed=4), roots=PAPER_ROOTS)
    assert _world_digest(world) == "265eda982412bdfe"
    assert truth_figures(world)["digest"] == "45a9c27d9d248678"


@pytest.mark.parametrize(("size", "tree"), [(2_000, 200), (20_000, 2_000), (12_000, 9_000)])
def test_a_tree_of_a_given_size_among_unrelated_models(size: int, tree: int) -> None:
    spec = WorldSpec.parse(f"size={size},seed=5,tree={tree}")
    world = build_world(spec, roots=PAPER_ROOTS)
    truth = world.truth()
    assert len(world.models) == size
    assert abs(len(truth.nodes) - tree) <= 0.1 * tree
    outside = [m for m in world.models.values() if m.repo_id not in truth.nodes]
    undeclared = sum(1 for m in outside if not m.declared)
    mistral = sum(1 for m in outside if m.family == "mistral")
    assert abs(undeclared / len(outside) - 0.6) < 0.05 and abs(mistral / len(outside) - 0.4) < 0.05
    # Tree and unrelated models are interleaved in time, as on the Hub.
    first_half = sorted(world.models.values(), key=lambda m: m.created_at)[: size // 2]
    share = sum(1 for m in first_half if m.repo_id in truth.nodes) / len(first_half)
    assert abs(share - tree / size) < 0.05
    figures = truth_figures(world, page_size=100)
    assert figures["nodes"] == len(truth.nodes) and figures["world_models"] == size
    assert figures["scan_pages"] == -(-size // 100) and figures["scan_bound"] == figures["scan_pages"] + 10
    assert figures["roots"] == 10 and figures["walk_bound"] >= figures["nodes"] + 10


def test_the_walk_bound_counts_every_page_of_every_node() -> None:
    world = build_world(WorldSpec(size=2000, seed=1, tree=1500), roots=PAPER_ROOTS)
    truth = world.truth()
    for page_size in (1000, 10):
        extra = sum(max(0, -(-sum(world.children_count(n).values()) // page_size) - 1) for n in truth.nodes)
        figures = truth_figures(world, page_size=page_size)
        assert figures["walk_bound"] == len(truth.nodes) + 10 + extra
    assert extra > 0  # pages of 10 split the big listings


def test_set_stats_moves_stats_without_a_commit() -> None:
    world = build_world(WorldSpec(size=200, seed=1))
    repo = world.models["google/gemma-2b"]
    version, sha, modified = world.version, repo.sha, repo.last_modified
    world.set_stats("google/gemma-2b", downloads=7, likes=3)
    assert (repo.downloads, repo.likes, repo.sha, repo.last_modified) == (7, 3, sha, modified)
    assert world.version > version  # cached listings are recomputed
    with pytest.raises(KeyError):
        world.set_stats("nobody/nothing", downloads=1)


def test_rename_moves_the_model_and_leaves_its_children_behind() -> None:
    world = build_world(WorldSpec(size=2000, seed=3), roots=PAPER_ROOTS)
    before = world.truth()

    def children(node: str) -> set[str]:
        return {c for (p, _), kids in world._children.items() if p == node for c in kids}

    # A parent whose children declare nothing else, so they hang by it alone.
    parent = next(
        n
        for n in sorted(before.nodes)
        if n not in PAPER_ROOTS and len(children(n)) >= 2 and all(world.models[c].declared == [n] for c in children(n))
    )
    kids = children(parent)
    oid = world.models[parent].object_id
    new_id = "renamed/" + parent.split("/")[1]
    world.rename(parent, new_id)
    after = world.truth()
    assert new_id in after.nodes and parent not in after.nodes
    assert after.shas[new_id] == before.shas[parent] and world.models[new_id].object_id == oid
    assert all(world.models[c].declared == [parent] for c in kids)  # cards are not rewritten
    assert kids <= before.nodes and not kids & after.nodes  # no longer reached
    assert world.children_count(new_id) == {} and "base_model:" + parent not in world.tags(new_id)
    assert world.redirect(parent) == new_id and world.model(parent) is None
    with pytest.raises(ValueError):
        world.rename(new_id, "google/gemma-2b")  # onto a live model
    with pytest.raises(KeyError):
        world.rename(parent, "elsewhere/x")  # the old id is no model any more


def test_a_renamed_root_is_found_under_its_new_id() -> None:
    world = build_world(WorldSpec(size=500, seed=1), roots=PAPER_ROOTS)
    world.rename("google/gemma-2b", "google/gemma-2b-renamed")
    truth = world.truth()
    assert "google/gemma-2b-renamed" in truth.nodes and "google/gemma-2b" not in truth.nodes
    assert truth_figures(world)["roots"] == 10


@pytest.mark.parametrize(
    "text",
    ["size=10", "size=300000", "bogus=1", "size", "size=1000,tree=2000", "size=1000,tree=50", "tree=x"],
)
def test_bad_world_specs_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        WorldSpec.parse(text)


def _depths(world):  # type: ignore[no-untyped-def]
    from auditor.lineage import LineageGraph

    graph = LineageGraph.from_edges(world.truth().edges)
    return {n: p.depth for n, p in graph.place(world.roots).items()}
