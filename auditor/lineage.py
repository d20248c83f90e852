"""Lineage records and the graph rules every part of the tool agrees on.

A model's lineage is what its uploader declared: `base_model` in the card, from which the Hub
derives one relation (`finetune`, `adapter`, `quantized` or `merge`) and the list of parents. The
rules (see docs/lineage.md):

- An edge is stored exactly as declared, even when the parent does not exist or lies outside the
  family tree ("kept as declared"); such edges are flagged as defects, never dropped.
- A model naming itself is a defect, not an edge.
- Several parents on a relation other than `merge` are kept (one edge each) and flagged.
- Cycles are legal input: every walk here terminates, and members of a cycle are flagged.
- A model belongs to the tree when some chain of declared edges leads from it to a root. Its
  family is that of its nearest root (ties broken by the order of the roots), its depth the length
  of that chain.

Everything here is pure (no I/O), so the crawler, the store and the reports share one definition.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

RELATIONS: tuple[str, ...] = ("finetune", "adapter", "quantized", "merge")

DEFECT_KINDS: tuple[str, ...] = (
    "self_reference",  # the model lists itself as a parent
    "multiple_parents",  # several parents on a relation that is not `merge`
    "parent_outside_tree",  # a declared parent that the crawl did not find under any root
    "unknown_relation",  # a relation the Hub does not define; the edge is not stored
    "cycle",  # the model is on a cycle of declared edges
    "invalid_parent_id",  # a declared parent whose id huggingface_hub refuses; the edge is not stored
)


@dataclass(frozen=True)
class ParentEdge:
    child: str
    parent: str
    relation: str
    #: Where the edge was read: `baseModels` (the Hub's derivation), `tags` or `cardData`.
    source: str
    #: Position of the parent in the declaration (merges list several).
    position: int = 0


@dataclass(frozen=True)
class LineageDefect:
    repo_id: str
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class ModelSnapshot:
    """One model's metadata as the Hub described it at crawl time."""

    repo_id: str
    sha: str | None
    author: str | None
    created_at: datetime | None
    last_modified: datetime | None
    downloads: int | None
    likes: int | None
    gated: str | None
    private: bool | None
    library_name: str | None
    pipeline_tag: str | None
    license: str | None
    num_parameters: int | None
    tags: tuple[str, ...]
    #: Direct children per relation, as the Hub counts them (`childrenModelCount`, which only the
    #: detail route gives); None when the Hub did not say.
    children_count: Mapping[str, int] | None
    relation: str | None
    parents: tuple[ParentEdge, ...]
    defects: tuple[LineageDefect, ...]
    #: The Hub's JSON for this model, unparsed, so new Hub fields are never lost.
    raw_json: str
    #: The ids P of its `base_model:P` tags: the models whose listing `filter=base_model:P` shows it
    #: under. The crawl follows these, by walk or by scan alike (docs/lineage.md).
    listed_under: tuple[str, ...] = ()


def family_of(root: str) -> str:
    """The family a root belongs to, from its name: `meta-llama/Llama-3.1-8B` -> `llama`.

    >>> family_of("microsoft/Phi-3.5-mini-instruct")
    'phi'
    """
    name = root.split("/")[-1].lower()
    for family in ("gemma", "llama", "phi", "mistral", "qwen"):
        if family in name:
            return family
    return root.split("/")[0].lower()


@dataclass(frozen=True)
class TreePlacement:
    family: str
    depth: int
    #: The root this model is nearest to.
    root: str


@dataclass
class LineageGraph:
    """Declared parent edges, indexed both ways."""

    parents: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_edges(cls, edges: Iterable[tuple[str, str, str]]) -> LineageGraph:
        """Build from (child, parent, relation) triples; self-loops are ignored."""
        graph = cls()
        for child, parent, relation in edges:
            if child == parent:
                continue
            graph.parents.setdefault(child, []).append((parent, relation))
            graph.children.setdefault(parent, []).append(child)
        return graph

    def place(self, roots: Iterable[str], members: set[str] | None = None) -> dict[str, TreePlacement]:
        """Breadth-first from the roots along child edges: family and depth of every reachable model.

        `members` limits the walk to models that exist (a deleted model breaks the chain through it).
        Cycles terminate because each model is placed once.
        """
        placement: dict[str, TreePlacement] = {}
        queue: deque[str] = deque()
        for root in roots:
            if root in placement or (members is not None and root not in members):
                continue
            placement[root] = TreePlacement(family=family_of(root), depth=0, root=root)
            queue.append(root)
        while queue:
            node = queue.popleft()
            here = placement[node]
            for child in self.children.get(node, ()):
                if child in placement or (members is not None and child not in members):
                    continue
                placement[child] = TreePlacement(family=here.family, depth=here.depth + 1, root=here.root)
                queue.append(child)
        return placement

    def closure(self, members: set[str] | None = None) -> list[tuple[str, str, int]]:
        """(ancestor, descendant, shortest distance) for every pair joined by child edges.

        A breadth-first walk from each model; each descendant is met once per walk, so cycles
        terminate (a model on a cycle is not its own descendant here).
        """
        pairs: list[tuple[str, str, int]] = []
        nodes = members if members is not None else set(self.parents) | set(self.children)
        for ancestor in sorted(nodes):
            seen = {ancestor}
            frontier = [ancestor]
            distance = 0
            while frontier:
                distance += 1
                following = []
                for node in frontier:
                    for child in self.children.get(node, ()):
                        if child in seen or (members is not None and child not in members):
                            continue
                        seen.add(child)
                        following.append(child)
                        pairs.append((ancestor, child, distance))
                frontier = following
        return pairs

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one model (iterative Tarjan)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        on_stack: set[str] = set()
        stack: list[str] = []
        components: list[list[str]] = []
        counter = 0
        nodes = set(self.parents) | set(self.children)
        for start in sorted(nodes):
            if start in index:
                continue
            work: list[tuple[str, int]] = [(start, 0)]
            while work:
                node, child_pos = work.pop()
                if child_pos == 0:
                    index[node] = low[node] = counter
                    counter += 1
                    stack.append(node)
                    on_stack.add(node)
                kids = self.children.get(node, [])
                if child_pos < len(kids):
                    work.append((node, child_pos + 1))
                    kid = kids[child_pos]
                    if kid not in index:
                        work.append((kid, 0))
                    elif kid in on_stack:
                        low[node] = min(low[node], index[kid])
                    continue
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
        return components
