"""One error hierarchy, in one module, drawn in that module's docstring."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from auditor import errors

ROOT = Path(__file__).resolve().parents[2]
ERRORS = {
    name: value
    for name, value in vars(errors).items()
    if inspect.isclass(value) and issubclass(value, errors.AuditorError) and value.__module__ == errors.__name__
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_every_error_is_drawn_in_the_tree(name: str) -> None:
    drawn = {word for line in (errors.__doc__ or "").splitlines() for word in line.replace("─", " ").split()}
    assert name in drawn, f"{name} is missing from the error tree in auditor/errors.py's docstring"


def test_no_error_of_ours_is_defined_outside_errors_py() -> None:
    strays = []
    for package in ("auditor", "crawlers", "reports", "schedules"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "auditor" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                    if bases & set(ERRORS):
                        strays.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert strays == []


def test_moved_errors_are_still_importable_from_their_old_modules() -> None:
    from auditor.audit.battery import BatteryError
    from auditor.audit.scoring import ScorerError
    from schedules.lock import CycleBusyError

    assert (BatteryError, ScorerError, CycleBusyError) == (
        errors.BatteryError,
        errors.ScorerError,
        errors.CycleBusyError,
    )
    assert errors.CycleBusyError.exit_code == 3
