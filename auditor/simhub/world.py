"""A generated Hub: lineage trees of any size, with the defects seen in the wild.

The world is deterministic from a seed and a size. It holds the three families the auditor
watches (the paper's Gemma, Llama and Phi roots), an unrelated family that must stay out of every
crawl (Mistral), and models that declare no base model at all. Derivatives of all four relations
are grown by preferential attachment, several generations deep: downloads are heavy-tailed and most
models are leaves; quantized copies and adapters almost never have children of their own.

Planted defects (each a handful of models, whatever the size):

- `no_base_model`: a model that declares nothing (invisible to a lineage crawl);
- `missing_parent`: a merge that names a parent which does not exist, and a finetune whose only
  parent does not exist (unreachable);
- `self_reference`: a model listing itself next to its real parent, and one listing only itself;
- `cycle`: two and three models whose declarations point back at each other;
- `multiple_parents`: a finetune declaring two parents;
- `cross_family`: a merge of a tree model and a Mistral model (the merge is in the tree, the
  Mistral parent is kept as declared, and Mistral's other descendants stay out).

`WorldSpec.tree` sizes the watched tree apart from the world: `size=200000,tree=20000` grows about
20,000 models under the watched roots and fills the rest with models a lineage crawl must not
touch (60% declaring no base model, 40% Mistral derivatives), as on the real Hub, where the tree
is a few percent of every model. Without `tree`, the four families share the world as before.

`World.evolve` changes the world between nights: new derivatives (some of them parents of others),
re-pushed models (new sha), deleted models, and edited declarations (a detached subtree joining the
tree, a tree model moving to another family). `World.set_stats` moves downloads and likes without a
commit, and `World.rename` moves a model to a new id, leaving a redirect behind. `World.truth` is
the oracle the tests compare a crawl with; it is computed from the world's own tables, never
through HTTP.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import Any

from auditor.config import DEFAULT_ROOTS
from auditor.lineage import RELATIONS, family_of

UNRELATED_ROOTS: tuple[str, ...] = ("mistralai/Mistral-7B-v0.1", "mistralai/Mistral-7B-Instruct-v0.2")
EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)

_ARCH = {
    "gemma": ("gemma2", "Gemma2ForCausalLM"),
    "llama": ("llama", "LlamaForCausalLM"),
    "phi": ("phi3", "Phi3ForCausalLM"),
    "mistral": ("mistral", "MistralForCausalLM"),
}
_LICENSES = {"gemma": "gemma", "llama": "llama3.1", "phi": "mit", "mistral": "apache-2.0"}
_PARAMS = {"gemma": 2_614_341_888, "llama": 8_030_261_248, "phi": 3_821_079_552, "mistral": 7_241_732_096}


#: The smallest `tree` accepted: the roots and planted defects alone make about 20 tree models.
TREE_MIN = 100


@dataclass(frozen=True)
class WorldSpec:
    """How to build a world: `size` models in all, from `seed`.

    `tree=N` makes about N of them (within 10%) the watched roots' tree and the rest unrelated;
    without it the families share the world as they always did (existing specs build the same
    world they always built).
    """

    size: int = 2000
    seed: int = 0
    defects: bool = True
    tree: int | None = None

    def __post_init__(self) -> None:
        if self.tree is not None and not TREE_MIN <= self.tree <= self.size:
            raise ValueError(f"tree={self.tree} is out of range: use {TREE_MIN} to size ({self.size})")

    @classmethod
    def parse(cls, text: str) -> WorldSpec:
        """Parse `size=20000,seed=7[,defects=off][,tree=2000]`.

        >>> WorldSpec.parse("size=500,seed=3")
        WorldSpec(size=500, seed=3, defects=True, tree=None)
        >>> WorldSpec.parse("size=200000,seed=1,tree=20000").tree
        20000
        """
        values: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, value = part.partition("=")
            if not sep or key not in ("size", "seed", "defects", "tree"):
                raise ValueError(f"bad world spec part {part!r}: use size=N,seed=S[,defects=on|off][,tree=T]")
            try:
                values[key] = value.lower() in ("on", "true", "1", "yes") if key == "defects" else int(value)
            except ValueError:
                raise ValueError(f"bad world spec part {part!r}: {key} must be an integer") from None
        spec = cls(**values)
        if not 20 <= spec.size <= 200_000:
            raise ValueError(f"world size {spec.size} is out of range: use 20 to 200000")
        return spec


@dataclass
class SimFile:
    content: bytes
    lfs: bool = False


@dataclass
class SimRepo:
    repo_id: str
    repo_type: str  # "model" or "dataset"
    created_at: datetime
    last_modified: datetime
    #: Commit shas, oldest first; the last one is `main`.
    commits: list[str]
    #: Parents exactly as the card declares them (may include itself or missing repos).
    declared: list[str] = field(default_factory=list)
    relation: str | None = None
    family: str | None = None
    downloads: int = 0
    likes: int = 0
    gated: bool | str = False
    library_name: str | None = "transformers"
    pipeline_tag: str | None = "text-generation"
    license: str | None = None
    num_parameters: int | None = None
    quant_format: str | None = None  # "gguf" for GGUF copies
    deleted: bool = False
    #: Real files (tiny models, datasets); generated placeholders are used when None.
    files: dict[str, SimFile] | None = None
    #: Commit sha -> files at that commit, for repos with real files that were re-pushed.
    history: dict[str, dict[str, SimFile]] = field(default_factory=dict)
    #: Accepting new children (finetunes and merges; rarely anything else).
    fertile: bool = False
    #: The ids this repo had before renames, oldest first (each now redirects here).
    former_ids: list[str] = field(default_factory=list)

    @property
    def sha(self) -> str:
        return self.commits[-1]

    @cached_property
    def object_id(self) -> str:
        """The Hub's `_id`: fixed at creation, so a renamed repo keeps it (it names the repo, not the id)."""
        return object_id(self.former_ids[0] if self.former_ids else self.repo_id)

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]


def object_id(repo_id: str) -> str:
    """A 24-hex-digit `_id` (the Hub's are Mongo ObjectIds) derived from the id a repo was created with."""
    return hashlib.md5(repo_id.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Truth:
    """What a correct crawl from `roots` must store."""

    nodes: frozenset[str]
    #: (child, parent, relation) for every declared parent of every node, self-references excepted.
    edges: frozenset[tuple[str, str, str]]
    shas: Mapping[str, str]


@dataclass(frozen=True)
class ChangeLog:
    new: tuple[str, ...] = ()
    repushed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    redeclared: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.new) + len(self.repushed) + len(self.deleted) + len(self.redeclared)


class World:
    """The simulated Hub's state. Thread-safe for one writer and many readers (the server)."""

    def __init__(self, *, seed: int = 0, roots: tuple[str, ...] = DEFAULT_ROOTS) -> None:
        self.models: dict[str, SimRepo] = {}
        self.datasets: dict[str, SimRepo] = {}
        self.roots = roots
        self.clock = EPOCH
        self.version = 0
        self.lock = threading.RLock()
        #: token -> repo ids whose licence the token's owner accepted ("*" for all).
        self.tokens: dict[str, set[str]] = {}
        #: Old id -> current id of renamed models (always the current id: chains are flattened).
        self.redirects: dict[str, str] = {}
        self._rng = random.Random(seed)
        self._seed = seed
        self._children: dict[tuple[str, str], set[str]] = {}
        self._tag_index: dict[str, set[str]] = {}
        self._tags: dict[str, tuple[str, ...]] = {}
        # Preferential attachment pools, per family.
        self._fertile: dict[str, list[str]] = {}
        self._edge_parents: dict[str, list[str]] = {}
        self._serial = 0

    # -- queries --------------------------------------------------------------------------------

    def live_models(self) -> Iterable[SimRepo]:
        return (m for m in self.models.values() if not m.deleted)

    def model(self, repo_id: str) -> SimRepo | None:
        repo = self.models.get(repo_id)
        return repo if repo is not None and not repo.deleted else None

    def redirect(self, repo_id: str) -> str | None:
        """The current id of a renamed model, when `repo_id` is one of its former ids (and no live model)."""
        if self.model(repo_id) is not None:
            return None
        return self.redirects.get(repo_id)

    def children_count(self, repo_id: str) -> dict[str, int]:
        counts = {}
        for relation in RELATIONS:
            n = len(self._children.get((repo_id, relation), ()))
            if n:
                counts[relation] = n
        return counts

    def tags(self, repo_id: str) -> tuple[str, ...]:
        return self._tags[repo_id]

    def with_tag(self, tag: str) -> set[str]:
        return self._tag_index.get(tag, set())

    def truth(self, roots: Iterable[str] | None = None) -> Truth:
        """The oracle: every live descendant of the roots, and their declared edges."""
        roots = tuple(self.roots if roots is None else roots)
        nodes: set[str] = set()
        # A renamed root is found under its new id (the crawler's detail request is redirected);
        # its children still declare the old id, so they are not reached through it.
        roots = tuple(self.redirect(r) or r for r in roots)
        stack = [r for r in roots if self.model(r) is not None]
        nodes.update(stack)
        while stack:
            node = stack.pop()
            for relation in RELATIONS:
                for child in self._children.get((node, relation), ()):
                    if child not in nodes:
                        nodes.add(child)
                        stack.append(child)
        edges = {
            (n, parent, self.models[n].relation or "finetune")
            for n in nodes
            for parent in self.models[n].declared
            if parent != n
        }
        return Truth(frozenset(nodes), frozenset(edges), {n: self.models[n].sha for n in nodes})

    # -- building blocks ------------------------------------------------------------------------

    def tick(self, minutes: float = 1.0) -> datetime:
        self.clock += timedelta(minutes=minutes)
        return self.clock

    def new_sha(self, repo_id: str, n: int) -> str:
        return hashlib.sha1(f"{self._seed}:{repo_id}:{n}".encode()).hexdigest()

    def add_model(
        self,
        repo_id: str,
        *,
        declared: Iterable[str] = (),
        relation: str | None = None,
        family: str | None = None,
        files: Mapping[str, bytes | SimFile] | None = None,
        **attrs: Any,
    ) -> SimRepo:
        """Add (or replace) a model and index it. Attributes are those of `SimRepo`."""
        with self.lock:
            now = self.tick()
            declared = list(dict.fromkeys(declared))
            if declared and relation is None:
                relation = "merge" if len(declared) > 1 else "finetune"
            repo = SimRepo(
                repo_id=repo_id,
                repo_type="model",
                created_at=now,
                last_modified=now,
                commits=[self.new_sha(repo_id, 0)],
                declared=declared,
                relation=relation,
                family=family,
                files=_as_files(files) if files is not None else None,
                **attrs,
            )
            if repo_id in self.models:
                self._unindex(self.models[repo_id])
            self.models[repo_id] = repo
            if self.redirects.pop(repo_id, None) is not None:
                # A new repo takes the name over from a redirect: it is another repo, with its own `_id`.
                repo.object_id = object_id(f"{repo_id}#{self.version}")
            self._index(repo)
            self.version += 1
            return repo

    def add_dataset(self, repo_id: str, files: Mapping[str, bytes | SimFile], **attrs: Any) -> SimRepo:
        with self.lock:
            now = self.tick()
            repo = SimRepo(
                repo_id=repo_id,
                repo_type="dataset",
                created_at=now,
                last_modified=now,
                commits=[self.new_sha("datasets/" + repo_id, 0)],
                files=_as_files(files),
                library_name=None,
                pipeline_tag=None,
                **attrs,
            )
            self.datasets[repo_id] = repo
            self.version += 1
            return repo

    def repush(self, repo_id: str, files: Mapping[str, bytes | SimFile] | None = None) -> str:
        """A new commit on main: new sha and lastModified (and new files, when given)."""
        with self.lock:
            repo = self.models.get(repo_id) or self.datasets[repo_id]
            if repo.files is not None:
                repo.history[repo.sha] = repo.files
            if files is not None:
                repo.files = _as_files(files)
            repo.commits.append(self.new_sha(repo_id, len(repo.commits)))
            repo.last_modified = self.tick()
            self.version += 1
            return repo.sha

    def delete(self, repo_id: str) -> None:
        with self.lock:
            repo = self.models[repo_id]
            self._unindex(repo)
            repo.deleted = True
            self.version += 1

    def set_stats(self, repo_id: str, downloads: int | None = None, likes: int | None = None) -> None:
        """Move a model's downloads or likes without a commit (its lastModified stays), as on the Hub.

        Listings sorted by them change order at once, so a listing read across this change may
        skip or repeat models (the Hub's cursor is a keyset on the sort key).

        >>> world.set_stats("google/gemma-2-2b-it", downloads=10_000_000)   # doctest: +SKIP
        """
        with self.lock:
            repo = self.model(repo_id)
            if repo is None:
                raise KeyError(f"no live model {repo_id!r}")
            if downloads is not None:
                repo.downloads = downloads
            if likes is not None:
                repo.likes = likes
            self.version += 1

    def rename(self, old_id: str, new_id: str) -> None:
        """Rename (or transfer) a model; its old id redirects to the new one from now on.

        Commits, files, stats and declarations move with it (hub-docs, docs/hub/repositories-settings.md:
        renaming "will automatically redirect the old URL to the new location, and will preserve
        download counts and likes"). Its children's cards are not rewritten: they still declare the old
        id, so `filter=base_model:<new id>` does not list them and the truth does not reach them
        through it. Renaming onto a live model's id is an error.

        >>> world.rename("acme/old-name", "acme/new-name")   # doctest: +SKIP
        """
        with self.lock:
            repo = self.model(old_id)
            if repo is None:
                raise KeyError(f"no live model {old_id!r} to rename")
            if new_id == old_id or self.model(new_id) is not None:
                raise ValueError(f"cannot rename {old_id!r} to {new_id!r}: a model already has that id")
            self._unindex(repo)
            del self.models[old_id]  # (a deleted model's name is free to take: it is replaced below)
            repo.former_ids.append(old_id)
            repo.repo_id = new_id
            self.models[new_id] = repo
            self._index(repo)
            self.redirects.pop(new_id, None)
            for former, current in self.redirects.items():
                if current == old_id:
                    self.redirects[former] = new_id
            self.redirects[old_id] = new_id
            for pool in (*self._fertile.values(), *self._edge_parents.values()):
                for index, member in enumerate(pool):
                    if member == old_id:
                        pool[index] = new_id
            self.version += 1

    def redeclare(self, repo_id: str, declared: Iterable[str], relation: str | None = None) -> None:
        """An edit of the card's base_model: a new commit whose lineage differs."""
        with self.lock:
            repo = self.models[repo_id]
            self._unindex(repo)
            repo.declared = list(dict.fromkeys(declared))
            repo.relation = relation or ("merge" if len(repo.declared) > 1 else "finetune")
            repo.commits.append(self.new_sha(repo_id, len(repo.commits)))
            repo.last_modified = self.tick()
            self._index(repo)
            self.version += 1

    def _index(self, repo: SimRepo) -> None:
        tags = self._make_tags(repo)
        self._tags[repo.repo_id] = tags
        for tag in tags:
            self._tag_index.setdefault(tag, set()).add(repo.repo_id)
        if repo.relation:
            for parent in repo.declared:
                self._children.setdefault((parent, repo.relation), set()).add(repo.repo_id)

    def _unindex(self, repo: SimRepo) -> None:
        for tag in self._tags.pop(repo.repo_id, ()):
            self._tag_index.get(tag, set()).discard(repo.repo_id)
        if repo.relation:
            for parent in repo.declared:
                self._children.get((parent, repo.relation), set()).discard(repo.repo_id)

    def _make_tags(self, repo: SimRepo) -> tuple[str, ...]:
        tags: list[str] = []
        if repo.library_name:
            tags.append(repo.library_name)
        if repo.quant_format == "gguf":
            tags.append("gguf")
        elif repo.library_name in ("transformers", "peft"):
            tags.append("safetensors")
        if repo.family in _ARCH and repo.relation != "adapter":
            tags.append(_ARCH[repo.family][0])
        if repo.pipeline_tag:
            tags.append(repo.pipeline_tag)
        if repo.relation == "adapter":
            tags.append("lora")
        for parent in repo.declared:
            tags.append(f"base_model:{parent}")
            if repo.relation:
                tags.append(f"base_model:{repo.relation}:{parent}")
        if repo.license:
            tags.append(f"license:{repo.license}")
        tags.append("region:us")
        return tuple(dict.fromkeys(tags))

    # -- generated derivatives --------------------------------------------------------------------

    def grow(self, family: str, rng: random.Random) -> SimRepo:
        """One new community derivative in `family`, attached by preferential attachment."""
        parent = self._pick_parent(family, rng)
        roll = rng.random()
        relation = "finetune" if roll < 0.40 else "adapter" if roll < 0.65 else "quantized" if roll < 0.93 else "merge"
        declared = [parent]
        if relation == "merge":
            for _ in range(rng.choice((1, 1, 2))):
                other = self._pick_parent(family, rng)
                if other not in declared:
                    declared.append(other)
            if len(declared) == 1:
                relation = "finetune"
        self._serial += 1
        base = parent.split("/")[-1].split("-x")[0][:40]
        suffix = {
            "finetune": "sft",
            "adapter": "lora",
            "quantized": rng.choice(["GGUF", "AWQ", "bnb-4bit"]),
            "merge": "merge",
        }[relation]
        repo_id = f"user{rng.randrange(max(50, self._serial // 4))}/{base}-x{self._serial}-{suffix}"
        downloads = int(rng.paretovariate(1.1) * 5) - 5
        quant_gguf = relation == "quantized" and suffix == "GGUF"
        repo = self.add_model(
            repo_id,
            declared=declared,
            relation=relation,
            family=family,
            downloads=downloads,
            likes=int(downloads**0.5 / 4),
            gated=rng.choice([False] * 19 + ["auto"]),
            library_name="peft" if relation == "adapter" else None if quant_gguf else "transformers",
            quant_format="gguf" if quant_gguf else None,
            license=_LICENSES.get(family),
            num_parameters=None if quant_gguf or relation == "adapter" else _PARAMS.get(family),
        )
        fertile = relation in ("finetune", "merge") or rng.random() < 0.02
        if fertile:
            repo.fertile = True
            self._fertile.setdefault(family, []).append(repo_id)
        return repo

    def _pick_parent(self, family: str, rng: random.Random) -> str:
        roots = [r for r in self._family_roots(family) if self.model(r)]
        edge_parents = self._edge_parents.setdefault(family, [])
        fertile = self._fertile.get(family, [])
        choice: str | None = None
        for _ in range(8):
            roll = rng.random()
            if roll < 0.5 or not fertile:
                # Instruct models draw more derivatives than base models.
                weights = [
                    3 if r.lower().endswith(("-it", "instruct", "chat-hf", "instruct-v0.2")) else 1 for r in roots
                ]
                choice = rng.choices(roots, weights)[0]
            elif roll < 0.9 and edge_parents:
                choice = rng.choice(edge_parents)  # rich get richer
            else:
                choice = rng.choice(fertile)
            if self.model(choice) is not None:
                break
        assert choice is not None
        if choice not in roots:
            edge_parents.append(choice)
        return choice

    def _family_roots(self, family: str) -> list[str]:
        return [r for r in (*self.roots, *UNRELATED_ROOTS) if family_of(r) == family]

    # -- nights ---------------------------------------------------------------------------------

    def evolve(self, fraction: float = 0.01, *, seed: int | None = None) -> ChangeLog:
        """A night on the Hub: about `fraction` of the live models change.

        45% of the changes are new derivatives, 30% re-pushes, 15% deletions and 10% edited
        declarations. Downloads drift for some models without any commit (as on the Hub).
        """
        rng = random.Random(self._seed * 1_000_003 + self.version if seed is None else seed)
        with self.lock:
            self.clock = max(self.clock, max(m.last_modified for m in self.models.values())) + timedelta(days=1)
            live = [m.repo_id for m in self.live_models()]
            n = max(4, round(fraction * len(live)))
            n_new, n_push, n_del = round(n * 0.45), round(n * 0.30), round(n * 0.15)
            n_edit = max(1, n - n_new - n_push - n_del)
            families = ["gemma", "llama", "phi", "mistral"]
            new = [self.grow(rng.choices(families, [3, 4, 2, 1])[0], rng).repo_id for _ in range(n_new)]
            protected = set(self.roots) | set(UNRELATED_ROOTS) | set(new)
            candidates = [i for i in live if i not in protected]
            rng.shuffle(candidates)
            pushed = candidates[:n_push]
            for repo_id in pushed:
                self.repush(repo_id)
            deleted = candidates[n_push : n_push + n_del]
            for repo_id in deleted:
                self.delete(repo_id)
            edited = self._edit_declarations(rng, n_edit, exclude=set(pushed) | set(deleted) | protected)
            for repo_id in rng.sample(live, min(len(live), max(1, len(live) // 20))):
                if not self.models[repo_id].deleted:
                    self.models[repo_id].downloads += rng.randrange(1, 50)
            return ChangeLog(tuple(new), tuple(pushed), tuple(deleted), tuple(edited))

    def _edit_declarations(self, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
        edited: list[str] = []
        # Detached subtrees (declaring a missing parent) join the tree, children and all.
        detached = [
            m.repo_id
            for m in self.live_models()
            if m.repo_id.startswith("orphanage/") and m.repo_id not in exclude and not m.repo_id.endswith("-child")
        ]
        tree = self.truth().nodes
        movable = sorted(i for i in tree if i not in exclude and self.models[i].relation == "finetune")
        rng.shuffle(movable)
        for i in range(n):
            if i % 2 == 0 and detached:
                repo_id = detached.pop()
                family = self.models[repo_id].family or "llama"
                self.redeclare(repo_id, [self._pick_parent(family, rng)], "finetune")
            elif movable:
                repo_id = movable.pop()
                self.redeclare(repo_id, [rng.choice(UNRELATED_ROOTS)], "finetune")
            else:
                continue
            edited.append(repo_id)
        return edited


def build_world(spec: WorldSpec, *, roots: tuple[str, ...] = DEFAULT_ROOTS) -> World:
    """Generate a world of `spec.size` models (roots, families, defects) from `spec.seed`."""
    world = World(seed=spec.seed, roots=roots)
    rng = random.Random(spec.seed)
    for root in (*roots, *UNRELATED_ROOTS):
        family = family_of(root)
        world.add_model(
            root,
            family=family,
            downloads=rng.randrange(200_000, 5_000_000),
            likes=rng.randrange(500, 5000),
            gated="manual" if family in ("gemma", "llama") else False,
            license=_LICENSES.get(family),
            num_parameters=_PARAMS.get(family),
        )
    if spec.defects:
        _plant_defects(world, rng, detached=spec.size >= 100)
    if spec.tree is not None:
        _grow_tree_apart(world, rng, spec.size, spec.tree)
        return world
    families = ["gemma", "llama", "phi", "mistral"]
    weights = [3, 4, 2, 1]
    while len(world.models) < spec.size:
        if rng.random() < 0.02:
            _orphan(world, rng)
        else:
            world.grow(rng.choices(families, weights)[0], rng)
    return world


def _grow_tree_apart(world: World, rng: random.Random, size: int, tree: int) -> None:
    """Fill the world to `size` with `tree` models in the watched tree and the rest unrelated.

    Each new model is drawn tree or unrelated in proportion to what each still lacks, so both kinds
    are spread over the world's whole history (createdAt order mixes them, as on the Hub).
    Every model grown in a watched family attaches under a tree node, so the tree's size is exact
    up to the roots and defects already there.
    """
    watched, watched_weights = ["gemma", "llama", "phi"], [3, 4, 2]
    tree_left = max(0, tree - len(world.truth().nodes))
    other_left = max(0, size - len(world.models) - tree_left)
    while tree_left + other_left > 0:
        if rng.random() * (tree_left + other_left) < tree_left:
            world.grow(rng.choices(watched, watched_weights)[0], rng)
            tree_left -= 1
        else:
            if rng.random() < 0.6:
                _orphan(world, rng)
            else:
                world.grow("mistral", rng)
            other_left -= 1


def _orphan(world: World, rng: random.Random) -> None:
    world._serial += 1
    world.add_model(
        f"user{rng.randrange(500)}/from-scratch-{world._serial}", family=None, downloads=rng.randrange(0, 100)
    )


def _plant_defects(world: World, rng: random.Random, *, detached: bool = True) -> None:
    """The defects seen in the wild. Eight models always; the rest (28) in worlds of 100 or more."""
    gemma_it, llama_it = "google/gemma-2-2b-it", "meta-llama/Llama-3.1-8B-Instruct"
    phi, phi3 = "microsoft/Phi-3.5-mini-instruct", "microsoft/Phi-3-mini-4k-instruct"
    common: dict[str, Any] = {"license": "apache-2.0", "downloads": 10}

    def add(repo_id: str, declared: list[str], relation: str | None, family: str | None) -> None:
        world.add_model(repo_id, declared=declared, relation=relation, family=family, **common)

    # A merge naming a parent that does not exist.
    add("defects/merge-with-ghost", [llama_it, "ghost/deleted-model"], "merge", "llama")
    # Self-references: next to a real parent, and alone (unreachable).
    add("defects/names-itself", [gemma_it, "defects/names-itself"], "finetune", "gemma")
    add("defects/only-itself", ["defects/only-itself"], "finetune", None)
    # Two parents on a finetune.
    add("defects/two-parents", [phi, phi3], "finetune", "phi")
    # A 2-cycle hanging off the tree.
    add("defects/cycle-a", [gemma_it], "finetune", "gemma")
    add("defects/cycle-b", ["defects/cycle-a"], "finetune", "gemma")
    world.redeclare("defects/cycle-a", [gemma_it, "defects/cycle-b"], "finetune")
    # A merge across families: in the tree through Phi, with a Mistral parent kept as declared.
    add("defects/cross-family-merge", [phi, UNRELATED_ROOTS[1]], "merge", "phi")
    add("defects/no-base-model", [], None, None)
    if not detached:
        return
    # A finetune whose only parent is missing (unreachable).
    add("defects/only-ghost-parent", ["ghost/never-existed"], "finetune", "llama")
    # A 3-cycle through a merge, and a cycle wholly outside the tree (which must stay out).
    add("defects/ring-1", [llama_it, "defects/ring-3"], "merge", "llama")
    add("defects/ring-2", ["defects/ring-1"], "finetune", "llama")
    add("defects/ring-3", ["defects/ring-2"], "adapter", "llama")
    add("defects/island-a", ["defects/island-b"], "finetune", None)
    add("defects/island-b", ["defects/island-a"], "finetune", None)
    # Detached subtrees: their head declares a missing parent; an edit later attaches them.
    for i in range(6):
        head = f"orphanage/detached-{i}"
        family = ("gemma", "llama", "phi")[i % 3]
        add(head, [f"ghost/gone-{i}"], "finetune", family)
        world.models[head].fertile = True
        for j in range(2):
            add(f"orphanage/detached-{i}-{j}-child", [head], ("quantized", "adapter")[j], family)


def _as_files(files: Mapping[str, bytes | SimFile]) -> dict[str, SimFile]:
    return {path: f if isinstance(f, SimFile) else SimFile(f, lfs=_looks_large(path, f)) for path, f in files.items()}


def _looks_large(path: str, content: bytes) -> bool:
    return path.endswith((".safetensors", ".bin", ".gguf", ".pt", ".parquet")) or len(content) > 10_000_000


def generated_files(world: World, repo: SimRepo, sha: str) -> dict[str, SimFile]:
    """Placeholder files for a generated model at one of its commits (deterministic)."""
    if repo.files is not None:
        return repo.history.get(sha, repo.files) if sha != repo.sha else repo.files
    revision = repo.commits.index(sha)
    card: dict[str, Any] = {}
    if repo.declared:
        card["base_model"] = repo.declared[0] if len(repo.declared) == 1 else repo.declared
        card["base_model_relation"] = repo.relation
    if repo.license:
        card["license"] = repo.license
    if repo.library_name:
        card["library_name"] = repo.library_name
    if repo.pipeline_tag:
        card["pipeline_tag"] = repo.pipeline_tag
    front = "".join(f"{k}: {json.dumps(v)}\n" for k, v in card.items())
    readme = f"---\n{front}---\n\n# {repo.repo_id}\n\nRevision {revision}.\n".encode()
    files = {"README.md": SimFile(readme), ".gitattributes": SimFile(b"*.safetensors filter=lfs diff=lfs\n")}
    model_type, arch = _ARCH.get(repo.family or "", ("llama", "LlamaForCausalLM"))
    seed_bytes = hashlib.sha256(f"{repo.repo_id}@{sha}".encode()).digest()
    if repo.quant_format == "gguf":
        files["model-Q4_K_M.gguf"] = SimFile(b"GGUF" + seed_bytes * 32, lfs=True)
    elif repo.relation == "adapter":
        files["adapter_config.json"] = SimFile(
            json.dumps(
                {
                    "base_model_name_or_path": repo.declared[0] if repo.declared else None,
                    "peft_type": "LORA",
                    "r": 8,
                }
            ).encode()
        )
        files["adapter_model.safetensors"] = SimFile(seed_bytes * 64, lfs=True)
    else:
        files["config.json"] = SimFile(json.dumps({"architectures": [arch], "model_type": model_type}).encode())
        files["model.safetensors"] = SimFile(seed_bytes * 64, lfs=True)
    return files
