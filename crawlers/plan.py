"""Which way a full crawl learns the tree: a walk or a scan, whichever costs fewer requests.

A listing cannot say whether a model has children (`childrenModelCount` is refused on the listing
route: huggingface_hub PR #3182), so learning a tree costs either

- **walk**: one listing per model of the tree (`filter=base_model:<id>`, every relation at once),
  leaves included: about (models in the tree) + (roots) requests; or
- **scan**: every page of the whole Hub listing, lineage computed here: about
  (models on the Hub) / (page size) + (roots) requests, whatever the size of the tree.

For the paper's ten roots on the real Hub (trees of tens of thousands of models, a Hub of about
2.2M models, 2,200 pages) the scan wins; for a small custom root the walk does. `auto` estimates
both from what it knows: the roots' detail route (which gives `childrenModelCount`), the tree the
store holds from the previous crawl, and the Hub's size as the last scan counted it (else
`crawl.hub_models`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from auditor.lineage import ModelSnapshot

#: Before any crawl has counted a tree, it is taken to hold this many models per direct child of
#: its roots (a prior: depth beyond the first generation is unknown; the store's own count of the
#: tree replaces it from the second crawl on).
TREE_PER_DIRECT_CHILD = 2.0


@dataclass(frozen=True)
class CostEstimate:
    """The requests a strategy would spend, and what the figure rests on."""

    requests: int
    basis: str


@dataclass(frozen=True)
class StrategyChoice:
    strategy: str
    #: `auto` when the estimate chose, `configured` when `crawl.strategy` (or `--strategy`) named it.
    chosen_by: str
    walk: CostEstimate
    scan: CostEstimate

    @property
    def reason(self) -> str:
        chosen, other = (self.walk, self.scan) if self.strategy == "walk" else (self.scan, self.walk)
        other_name = "scan" if self.strategy == "walk" else "walk"
        lead = "cheaper" if self.chosen_by == "auto" else "as configured"
        return (
            f"{self.strategy} ({lead}): about {chosen.requests:,} requests ({chosen.basis})"
            f" against about {other.requests:,} for a {other_name} ({other.basis})"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "chosen_by": self.chosen_by,
            "reason": self.reason,
            "walk": {"requests": self.walk.requests, "basis": self.walk.basis},
            "scan": {"requests": self.scan.requests, "basis": self.scan.basis},
        }


def estimate_walk(roots: Sequence[ModelSnapshot], *, tree_size: int, page_size: int) -> CostEstimate:
    """One listing per model of the tree, one more page per `page_size` children, one detail
    request per root and one for the change feed's head."""
    direct = sum(sum(r.children_count.values()) for r in roots if r.children_count)
    unknown = sum(1 for r in roots if r.children_count is None)
    # One listing shows every relation of a model, so a root needs more pages only past
    # `page_size` children in all.
    extra_pages = sum(max(0, -(-sum(r.children_count.values()) // page_size) - 1) for r in roots if r.children_count)
    if tree_size > 0:
        nodes = max(tree_size, len(roots) + direct)
        basis = f"{tree_size:,} models in the tree at the last crawl"
    else:
        nodes = len(roots) + round(direct * TREE_PER_DIRECT_CHILD)
        basis = f"{direct:,} direct children of the roots, taken as {TREE_PER_DIRECT_CHILD:g} models of tree each"
    if unknown:
        basis += f"; {unknown} root(s) did not say how many children they have"
    return CostEstimate(nodes + extra_pages + len(roots) + 1, basis)


def estimate_scan(*, hub_models: int, learned: bool, n_roots: int, page_size: int) -> CostEstimate:
    """Every page of the Hub listing, one detail request per root and one for the feed's head."""
    pages = -(-hub_models // page_size)
    source = "as the last scan counted them" if learned else "crawl.hub_models, until a scan counts them"
    return CostEstimate(
        pages + n_roots + 1, f"{hub_models:,} models on the Hub ({source}), {page_size:,} a page: {pages:,} pages"
    )


def choose_strategy(requested: str, walk: CostEstimate, scan: CostEstimate) -> StrategyChoice:
    """`requested` is `walk`, `scan` or `auto` (the cheaper of the two estimates; a tie walks).

    >>> walk, scan = CostEstimate(61, "small tree"), CostEstimate(2211, "big Hub")
    >>> choose_strategy("auto", walk, scan).strategy
    'walk'
    """
    if requested in ("walk", "scan"):
        return StrategyChoice(requested, "configured", walk, scan)
    return StrategyChoice("walk" if walk.requests <= scan.requests else "scan", "auto", walk, scan)
