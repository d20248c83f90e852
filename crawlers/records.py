"""Parsing the Hub's model JSON into lineage records.

Hub metadata is untrusted and messy, so parsing is lenient where the Hub is inconsistent (a list
of parents where one is expected, a missing `baseModels`) and strict about types. Unknown fields
are kept: the raw JSON is stored next to the parsed snapshot.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from auditor.errors import HubError
from auditor.lineage import RELATIONS, LineageDefect, ModelSnapshot, ParentEdge

#: What a crawl asks listings for: the lineage fields the listing route accepts. `baseModels`,
#: `childrenModelCount` and `usedStorage` are refused there (400 for the whole request): they are
#: detail-route only (huggingface_hub PR #3182; the installed client's `list_models` docstring,
#: hf_api.py line 2380, lists what `expand` takes on the listing route). Lineage in a listing
#: therefore comes from the `base_model:` tags (and the card).
LISTING_FIELDS: tuple[str, ...] = (
    "author",
    "cardData",
    "createdAt",
    "downloads",
    "gated",
    "lastModified",
    "library_name",
    "likes",
    "pipeline_tag",
    "private",
    "safetensors",
    "sha",
    "tags",
)

#: What a crawl asks a root's detail route (`GET /api/models/{id}`) for: the listing's fields plus
#: the two lineage fields only that route gives (`model_info`'s docstring, hf_api.py line 3179).
DETAIL_FIELDS: tuple[str, ...] = (*LISTING_FIELDS, "baseModels", "childrenModelCount")


class _BaseModelRef(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str


class _BaseModels(BaseModel):
    model_config = ConfigDict(extra="allow")
    relation: str | None = None
    models: list[_BaseModelRef] = []


class HubModelJSON(BaseModel):
    """The fields of a Hub model object the auditor reads; everything else is kept in `raw`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    id: str
    sha: str | None = None
    author: str | None = None
    createdAt: datetime | None = None
    lastModified: datetime | None = None
    downloads: int | None = None
    likes: int | None = None
    gated: bool | str | None = None
    private: bool | None = None
    library_name: str | None = None
    pipeline_tag: str | None = None
    tags: list[str] = []
    cardData: dict[str, Any] | None = None
    baseModels: _BaseModels | list[_BaseModels] | None = None
    childrenModelCount: dict[str, int] | None = None
    safetensors: dict[str, Any] | None = None

    @field_validator("childrenModelCount", mode="before")
    @classmethod
    def _counts(cls, value: Any) -> Any:
        # Older Hub answers gave a bare integer: the total, relation unknown.
        if isinstance(value, int):
            return None
        return value


def valid_repo_id(repo_id: str) -> bool:
    """Whether huggingface_hub accepts `repo_id` (`validate_repo_id`, utils/_validators.py in 2.x:
    letters, digits, `-`, `_`, `.`, an optional namespace, at most 96 characters a part, no `--` or
    `..`, no `.git` ending). An id it refuses, from a hostile or broken listing (a control character,
    a bracket), would make every later request for it raise `HFValidationError`.

    >>> valid_repo_id("meta-llama/Llama-3.1-8B"), valid_repo_id("evil/\x1b[31m")
    (True, False)
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


def parse_model(item: dict[str, Any]) -> ModelSnapshot:
    """Turn one Hub model object into a snapshot with its declared edges and defects."""
    try:
        model = HubModelJSON.model_validate(item)
    except ValidationError as err:
        repo = item.get("id", "?") if isinstance(item, dict) else "?"
        raise HubError(f"the Hub sent malformed metadata for {repo}: {err.errors()[0]['msg']}") from None
    if not valid_repo_id(model.id):
        raise HubError(
            f"the Hub listed a model whose id huggingface_hub refuses: {model.id!a}",
            hint="it is left out of the crawl; no request is made for it",
        )
    relation, parents, source = _declared_parents(model)
    defects: list[LineageDefect] = []
    for parent in [p for p in parents if not valid_repo_id(p)]:
        defects.append(LineageDefect(model.id, "invalid_parent_id", ascii(parent)))
        parents = [p for p in parents if p != parent]
    if relation is not None and relation not in RELATIONS:
        defects.append(LineageDefect(model.id, "unknown_relation", relation))
        parents = []
    if model.id in parents:
        defects.append(LineageDefect(model.id, "self_reference", model.id))
        parents = [p for p in parents if p != model.id]
    if relation != "merge" and len(parents) > 1:
        defects.append(LineageDefect(model.id, "multiple_parents", ", ".join(parents)))
    edges = tuple(
        ParentEdge(child=model.id, parent=p, relation=relation, source=source, position=i)
        for i, p in enumerate(parents)
        if relation is not None
    )
    card = model.cardData or {}
    license_ = card.get("license")
    if isinstance(license_, list):
        license_ = ",".join(str(x) for x in license_)
    if license_ is None:
        license_ = next((t.split(":", 1)[1] for t in model.tags if t.startswith("license:")), None)
    gated = None if model.gated is None else str(model.gated).lower()
    num_parameters = model.safetensors.get("total") if model.safetensors else None
    return ModelSnapshot(
        repo_id=model.id,
        sha=model.sha,
        author=model.author or model.id.split("/")[0],
        created_at=model.createdAt,
        last_modified=model.lastModified,
        downloads=model.downloads,
        likes=model.likes,
        gated=gated,
        private=model.private,
        library_name=model.library_name,
        pipeline_tag=model.pipeline_tag,
        license=str(license_) if license_ is not None else None,
        num_parameters=num_parameters if isinstance(num_parameters, int) else None,
        tags=tuple(model.tags),
        children_count=(
            {k: int(v) for k, v in model.childrenModelCount.items()} if model.childrenModelCount is not None else None
        ),
        relation=relation if edges else None,
        parents=edges,
        defects=tuple(defects),
        raw_json=json.dumps(item, separators=(",", ":"), sort_keys=True),
        listed_under=listed_under(model.tags),
    )


def listed_under(tags: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The ids P of the `base_model:P` tags: what `filter=base_model:P` lists a model under.

    The Hub tags a model `base_model:P` and `base_model:<relation>:P` for each declared parent P
    (the relation form is shown in hub-docs, docs/inference-providers/register-as-a-provider.md:
    "tagged with both `lora` and `base_model:adapter:black-forest-labs/FLUX.1-dev`"). A model id
    has no colon, so the plain form is the one with no colon after the prefix.

    >>> listed_under(["base_model:g/a", "base_model:finetune:g/a", "license:mit"])
    ('g/a',)
    """
    found = [t[len("base_model:") :] for t in tags if isinstance(t, str) and t.startswith("base_model:")]
    return tuple(dict.fromkeys(p for p in found if p and ":" not in p))


def _declared_parents(model: HubModelJSON) -> tuple[str | None, list[str], str]:
    """(relation, parents, source): from baseModels, else the tags, else the card."""
    base = model.baseModels
    if isinstance(base, list):  # tolerate a list of blocks: take the first relation, all models
        relation = next((b.relation for b in base if b.relation), None)
        ids = [m.id for b in base for m in b.models]
        if ids:
            return relation or _default_relation(ids), list(dict.fromkeys(ids)), "baseModels"
    elif base is not None and base.models:
        ids = [m.id for m in base.models]
        return base.relation or _default_relation(ids), list(dict.fromkeys(ids)), "baseModels"

    from_tags: dict[str, str] = {}
    for tag in model.tags:
        if not tag.startswith("base_model:"):
            continue
        rest = tag[len("base_model:") :]
        head, _, tail = rest.partition(":")
        if tail and head in RELATIONS:
            from_tags[tail] = head
        else:
            from_tags.setdefault(rest, "")
    if from_tags:
        relations = {r for r in from_tags.values() if r}
        relation = relations.pop() if len(relations) == 1 else _default_relation(list(from_tags))
        return relation, list(from_tags), "tags"

    card = model.cardData or {}
    declared = card.get("base_model")
    if isinstance(declared, str):
        declared = [declared]
    if isinstance(declared, list) and declared:
        ids = [str(x) for x in declared if isinstance(x, str) and x]
        if ids:
            relation = card.get("base_model_relation")
            return str(relation) if relation else _default_relation(ids), list(dict.fromkeys(ids)), "cardData"
    return None, [], ""


def _default_relation(parents: list[str]) -> str:
    return "merge" if len(parents) > 1 else "finetune"
