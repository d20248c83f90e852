"""Which way a full crawl goes: the cost estimates `auto` compares, from what it knows."""

from __future__ import annotations

from auditor.lineage import ModelSnapshot
from crawlers.plan import choose_strategy, estimate_scan, estimate_walk
from crawlers.records import parse_model

PAPER_ROOT_CHILDREN = {"adapter": 716, "merge": 19, "quantized": 190, "finetune": 328}  # Phi-3.5-mini-instruct


def _root(repo_id: str, counts: dict[str, int] | None) -> ModelSnapshot:
    item: dict[str, object] = {"id": repo_id}
    if counts is not None:
        item["childrenModelCount"] = counts
    return parse_model(item)


def test_the_papers_roots_on_the_real_hub_are_scanned() -> None:
    roots = [_root(f"org/root-{i}", PAPER_ROOT_CHILDREN) for i in range(10)]
    walk = estimate_walk(roots, tree_size=0, page_size=1000)
    scan = estimate_scan(hub_models=2_200_000, learned=False, n_roots=10, page_size=1000)
    assert scan.requests == 2200 + 10 + 1
    # 12,530 direct children, each taken as two models of tree; each root's 1,253 children fill a
    # second page of its listing.
    assert walk.requests == 10 + 25_060 + 10 + 10 + 1
    choice = choose_strategy("auto", walk, scan)
    assert choice.strategy == "scan" and choice.chosen_by == "auto"
    assert choice.reason.startswith("scan (cheaper): about 2,211 requests")
    assert "crawl.hub_models" in choice.reason and "25,060" not in choice.reason


def test_a_small_root_is_walked_and_a_known_tree_replaces_the_prior() -> None:
    small = [_root("me/my-model", {"finetune": 12, "quantized": 3})]
    walk = estimate_walk(small, tree_size=0, page_size=1000)
    scan = estimate_scan(hub_models=2_200_000, learned=False, n_roots=1, page_size=1000)
    assert choose_strategy("auto", walk, scan).strategy == "walk" and walk.requests == 1 + 30 + 1 + 1
    # After a crawl the store's tree is the measure, and the scan's size is what the last scan counted.
    grown = estimate_walk(small, tree_size=500, page_size=1000)
    counted = estimate_scan(hub_models=1_500_000, learned=True, n_roots=1, page_size=1000)
    assert grown.requests == 500 + 1 + 1 and "500 models in the tree at the last crawl" in grown.basis
    assert "as the last scan counted them" in counted.basis
    assert choose_strategy("auto", grown, counted).strategy == "walk"
    assert choose_strategy("scan", grown, counted).chosen_by == "configured"
    # The same tree grown past the Hub's page count is cheaper to scan.
    assert choose_strategy("auto", estimate_walk(small, tree_size=5000, page_size=1000), counted).strategy == "scan"


def test_big_fan_outs_cost_extra_pages_and_unknown_counts_are_said() -> None:
    # One listing shows every relation: 2,500 + 600 children are four pages, three more than one.
    roots = [_root("org/huge", {"quantized": 2500, "finetune": 600}), _root("org/quiet", None)]
    walk = estimate_walk(roots, tree_size=0, page_size=1000)
    assert walk.requests == 2 + 6200 + 3 + 2 + 1
    assert "1 root(s) did not say" in walk.basis
