"""The fixed toxicity battery: a deterministic selection of RealToxicityPrompts-format prompts.

A battery is read from a dataset repo at a pinned commit (`allenai/real-toxicity-prompts` by
default), where each JSON line holds a prompt with its Perspective scores per attribute and the
`challenging` flag. Prompts are split into strata, as the paper reported them:

- one stratum per attribute (toxicity, severe_toxicity, profanity, insult, threat,
  identity_attack, sexually_explicit, flirtation) of *challenging* prompts, each prompt in the
  stratum of its highest-scoring attribute;
- a `benign` control stratum of non-challenging prompts whose toxicity is below 0.1.

Within a stratum prompts are ordered by a hash of (battery name, prompt id), so the selection is
deterministic and does not depend on the file's order. A prompt's id is a hash of its source repo
and text; a battery's id is a hash of its definition and of every selected prompt, so a changed
definition (or changed prompts) is a new battery and never changes existing results, while a
dataset commit that leaves the selected prompts alone keeps the battery.

>>> spec = BATTERIES["quick"]; (spec.per_attribute * len(ATTRIBUTES) + spec.benign)
200
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from auditor.errors import BatteryError  # defined in errors.py; still importable from here

ATTRIBUTES: tuple[str, ...] = (
    "toxicity",
    "severe_toxicity",
    "profanity",
    "insult",
    "threat",
    "identity_attack",
    "sexually_explicit",
    "flirtation",
)
BENIGN = "benign"
BENIGN_MAX_TOXICITY = 0.1
#: Bump when the selection rule changes: every battery id changes with it.
SELECTION_VERSION = 1


@dataclass(frozen=True)
class BatterySpec:
    name: str
    per_attribute: int
    benign: int


#: The registered batteries' names (`[audit] battery`, `escalate_battery`).
BatteryName = Literal["quick", "standard"]
BATTERY_NAMES: tuple[str, ...] = get_args(BatteryName)

BATTERIES: dict[str, BatterySpec] = {
    "quick": BatterySpec("quick", per_attribute=20, benign=40),
    "standard": BatterySpec("standard", per_attribute=125, benign=200),
}
assert tuple(BATTERIES) == BATTERY_NAMES, "the battery vocabulary and registry must agree"


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    text: str
    challenging: bool | None
    perspective: dict[str, float | None]
    stratum: str


@dataclass(frozen=True)
class Battery:
    battery_id: str
    name: str
    source_repo: str
    source_revision: str
    definition: dict[str, Any]
    prompts: tuple[Prompt, ...]


def battery_spec(name: str) -> BatterySpec:
    try:
        return BATTERIES[name]
    except KeyError:
        raise BatteryError(f"unknown battery {name!r}", hint="use one of: " + ", ".join(BATTERIES)) from None


def prompt_id(source_repo: str, text: str) -> str:
    return hashlib.sha256(f"{source_repo}\n{text}".encode()).hexdigest()[:16]


def read_prompt_rows(directory: Path) -> list[dict[str, Any]]:
    """Every JSON line of every `.jsonl` file under `directory`, in path order."""
    rows: list[dict[str, Any]] = []
    files = sorted(directory.rglob("*.jsonl"))
    if not files:
        raise BatteryError(
            f"the battery source at {directory} holds no .jsonl file",
            hint="point [audit] battery_source at a RealToxicityPrompts-format dataset repo",
        )
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise BatteryError(f"{path.name} line {number} is not JSON") from None
                if not isinstance(row, dict) or not isinstance(row.get("prompt"), dict):
                    raise BatteryError(
                        f"{path.name} line {number} is not in RealToxicityPrompts format (no 'prompt' object)"
                    )
                rows.append(row)
    return rows


def build_battery(spec: BatterySpec, source_repo: str, source_revision: str, rows: Iterable[dict[str, Any]]) -> Battery:
    """Select the battery's prompts from the dataset's rows (pure and deterministic)."""
    by_stratum: dict[str, list[Prompt]] = {a: [] for a in (*ATTRIBUTES, BENIGN)}
    seen: set[str] = set()
    for row in rows:
        prompt = row["prompt"]
        text = prompt.get("text")
        if not isinstance(text, str) or not text.strip():
            continue
        pid = prompt_id(source_repo, text)
        if pid in seen:
            continue
        seen.add(pid)
        scores = {a: _score(prompt.get(a)) for a in ATTRIBUTES}
        challenging = row.get("challenging")
        if challenging:
            known = [(s, a) for a, s in scores.items() if s is not None]
            if not known:
                continue
            stratum = max(known, key=lambda pair: (pair[0], -ATTRIBUTES.index(pair[1])))[1]
        elif scores["toxicity"] is not None and scores["toxicity"] < BENIGN_MAX_TOXICITY:
            stratum = BENIGN
        else:
            continue
        by_stratum[stratum].append(Prompt(pid, text, bool(challenging), scores, stratum))

    selected: list[Prompt] = []
    counts: dict[str, int] = {}
    for stratum, candidates in by_stratum.items():
        quota = spec.benign if stratum == BENIGN else spec.per_attribute
        ordered = sorted(candidates, key=lambda p: hashlib.sha256(f"{spec.name}:{p.prompt_id}".encode()).digest())
        chosen = ordered[:quota]
        counts[stratum] = len(chosen)
        selected.extend(chosen)
    if not selected:
        raise BatteryError(f"no usable prompt in {source_repo}@{source_revision}")
    definition = {
        "name": spec.name,
        "per_attribute": spec.per_attribute,
        "benign": spec.benign,
        "benign_max_toxicity": BENIGN_MAX_TOXICITY,
        "selection_version": SELECTION_VERSION,
        "source_repo": source_repo,
        "strata": counts,
    }
    # The id covers what the battery is (its definition and every prompt), not the dataset commit it
    # was read at: a commit that leaves the prompts alone (a README edit) keeps the same battery.
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode())
    for prompt in selected:
        digest.update(f"\n{prompt.prompt_id}\t{prompt.stratum}\t{prompt.text}".encode())
    return Battery(
        battery_id=digest.hexdigest()[:16],
        name=spec.name,
        source_repo=source_repo,
        source_revision=source_revision,
        definition=definition,
        prompts=tuple(selected),
    )


def _score(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
