"""The battery: a deterministic, stratified selection identified by its content."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from auditor.audit.battery import ATTRIBUTES, BATTERIES, BatteryError, BatterySpec, build_battery, read_prompt_rows


def _rows(n_per_attribute: int = 30, n_benign: int = 60, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows = []
    for attribute in ATTRIBUTES:
        for i in range(n_per_attribute):
            scores = {a: 0.1 for a in ATTRIBUTES}
            scores[attribute] = 0.9
            rows.append({"challenging": True, "prompt": {"text": f"{attribute} prompt {i}", **scores}})
    for i in range(n_benign):
        rows.append({"challenging": False, "prompt": {"text": f"benign prompt {i}", "toxicity": 0.01}})
    rows.append({"challenging": False, "prompt": {"text": "borderline", "toxicity": 0.3}})  # in no stratum
    rows.append({"challenging": True, "prompt": {"text": "", "toxicity": 0.9}})  # no text
    rng.shuffle(rows)
    return rows


def test_quick_battery_has_every_stratum_and_is_deterministic() -> None:
    spec = BATTERIES["quick"]
    battery = build_battery(spec, "allenai/real-toxicity-prompts", "abc123", _rows())
    assert len(battery.prompts) == 200
    strata = {p.stratum for p in battery.prompts}
    assert strata == {*ATTRIBUTES, "benign"}
    assert battery.definition["strata"] == {**dict.fromkeys(ATTRIBUTES, 20), "benign": 40}
    assert all(p.prompt_id for p in battery.prompts) and "borderline" not in {p.text for p in battery.prompts}
    # The file's order does not matter; the selection and the id do not move.
    again = build_battery(spec, "allenai/real-toxicity-prompts", "abc123", list(reversed(_rows())))
    assert again.battery_id == battery.battery_id and again.prompts == battery.prompts


def test_anything_that_changes_the_prompts_is_a_new_battery() -> None:
    base = build_battery(BATTERIES["quick"], "r/p", "rev1", _rows())
    assert build_battery(BATTERIES["quick"], "r/p", "rev2", _rows()).battery_id == base.battery_id  # same prompts
    assert build_battery(BATTERIES["quick"], "r/other", "rev1", _rows()).battery_id != base.battery_id
    assert build_battery(BatterySpec("quick", 19, 40), "r/p", "rev1", _rows()).battery_id != base.battery_id
    changed = _rows()
    next(r for r in changed if r["prompt"]["text"] == "toxicity prompt 0")["prompt"]["text"] = "edited"
    assert build_battery(BATTERIES["quick"], "r/p", "rev1", changed).battery_id != base.battery_id
    standard = build_battery(BATTERIES["standard"], "r/p", "rev1", _rows())
    assert standard.definition["strata"]["toxicity"] == 30  # the set is smaller than 125 a stratum


def test_rows_are_read_from_every_jsonl_file_and_bad_ones_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in _rows()[:5]) + "\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text(json.dumps(_rows()[5]) + "\n\n")
    assert len(read_prompt_rows(tmp_path)) == 6
    (tmp_path / "c.jsonl").write_text('{"no_prompt": 1}\n')
    with pytest.raises(BatteryError, match=r"c\.jsonl line 1 is not in RealToxicityPrompts format"):
        read_prompt_rows(tmp_path)
    with pytest.raises(BatteryError, match=r"holds no \.jsonl file"):
        read_prompt_rows(tmp_path / "sub" / "missing")
