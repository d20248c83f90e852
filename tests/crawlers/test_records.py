"""Parsing the Hub's model JSON: lenient about the Hub's inconsistencies, strict about types."""

from __future__ import annotations

import json

import pytest

from auditor.errors import HubError
from crawlers.records import parse_model


def test_base_models_give_the_edges_and_raw_json_is_kept() -> None:
    item = {
        "id": "u/m",
        "sha": "abc",
        "baseModels": {"relation": "adapter", "models": [{"id": "g/base"}]},
        "childrenModelCount": {"finetune": 2},
        "cardData": {"license": "mit"},
        "newHubField": [1, 2],
        "safetensors": {"parameters": {"BF16": 7}, "total": 7},
        "gated": False,
        "createdAt": "2024-05-01T00:00:00.000Z",
    }
    snapshot = parse_model(item)
    assert [(e.parent, e.relation, e.source) for e in snapshot.parents] == [("g/base", "adapter", "baseModels")]
    assert snapshot.relation == "adapter" and snapshot.license == "mit" and snapshot.num_parameters == 7
    assert snapshot.gated == "false" and snapshot.created_at is not None
    assert snapshot.children_count == {"finetune": 2}
    assert json.loads(snapshot.raw_json)["newHubField"] == [1, 2]


def test_tags_then_card_are_fallbacks() -> None:
    from_tags = parse_model({"id": "u/m", "tags": ["base_model:g/a", "base_model:quantized:g/a"]})
    assert [(e.parent, e.relation, e.source) for e in from_tags.parents] == [("g/a", "quantized", "tags")]
    from_card = parse_model({"id": "u/m", "cardData": {"base_model": ["g/a", "g/b"]}})
    assert {e.relation for e in from_card.parents} == {"merge"} and len(from_card.parents) == 2
    assert parse_model({"id": "u/m"}).parents == ()


def test_defects_are_recorded_not_dropped_silently() -> None:
    selfish = parse_model(
        {"id": "u/m", "baseModels": {"relation": "finetune", "models": [{"id": "u/m"}, {"id": "g/a"}]}}
    )
    assert [e.parent for e in selfish.parents] == ["g/a"]
    assert [d.kind for d in selfish.defects] == ["self_reference"]
    two = parse_model({"id": "u/m", "baseModels": {"relation": "finetune", "models": [{"id": "g/a"}, {"id": "g/b"}]}})
    assert len(two.parents) == 2 and [d.kind for d in two.defects] == ["multiple_parents"]
    odd = parse_model({"id": "u/m", "baseModels": {"relation": "distilled", "models": [{"id": "g/a"}]}})
    assert odd.parents == () and [d.kind for d in odd.defects] == ["unknown_relation"]


def test_a_listing_names_its_parents_in_the_base_model_tags() -> None:
    # The plain tag is what `filter=base_model:<id>` matches; the relation form gives the relation.
    tags = ["base_model:g/a", "base_model:merge:g/a", "base_model:g/b", "base_model:merge:g/b", "license:mit"]
    merged = parse_model({"id": "u/m", "tags": tags})
    assert merged.listed_under == ("g/a", "g/b")
    assert [(e.parent, e.relation) for e in merged.parents] == [("g/a", "merge"), ("g/b", "merge")]
    assert parse_model({"id": "u/m", "cardData": {"base_model": "g/a"}}).listed_under == ()
    assert parse_model({"id": "u/m"}).children_count is None  # a listing cannot say


def test_malformed_metadata_is_a_hub_error_naming_the_repo() -> None:
    with pytest.raises(HubError, match="malformed metadata for u/m"):
        parse_model({"id": "u/m", "downloads": "many"})


def test_ids_the_client_refuses_are_a_defect_or_left_out_never_a_crash() -> None:
    """Ids huggingface_hub's `validate_repo_id` refuses (a control character, a bracket, `..`)."""
    child = parse_model(
        {"id": "u/m", "baseModels": {"relation": "finetune", "models": [{"id": "g/\x1b[31mred"}, {"id": "g/a"}]}}
    )
    assert [e.parent for e in child.parents] == ["g/a"]
    assert [(d.kind, d.detail) for d in child.defects] == [("invalid_parent_id", "'g/\\x1b[31mred'")]
    for bad in ("u/m\x00", "u/[m]", "u/m..x"):
        with pytest.raises(HubError, match="id huggingface_hub refuses"):
            parse_model({"id": bad})
