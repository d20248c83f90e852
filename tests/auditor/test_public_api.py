"""The public Python API is `auditor.__all__`, pinned here: changing it is a decision, not an accident."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import auditor

PUBLIC_API = [
    "AuditorError",
    "DriftRow",
    "ResolvedConfig",
    "Store",
    "audit_model",
    "audit_pending",
    "drift_rows",
    "load_config",
]


def test_all_is_the_pinned_public_api() -> None:
    assert sorted(auditor.__all__) == PUBLIC_API


@pytest.mark.parametrize("name", PUBLIC_API)
def test_each_public_name_imports_and_is_documented(name: str) -> None:
    value = getattr(auditor, name)
    assert value.__name__ == name
    assert value.__module__.startswith("auditor.")
    doc = inspect.getdoc(value) or ""
    # A dataclass without a docstring gets its signature as __doc__, which documents nothing.
    assert doc.strip() and not doc.startswith(f"{name}("), f"auditor.{name} has no docstring"


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        auditor.no_such_thing  # noqa: B018


def test_importing_the_package_imports_no_heavy_library() -> None:
    code = (
        "import sys, auditor; from auditor import __all__; "
        "print([m for m in ('duckdb', 'torch', 'transformers', 'huggingface_hub', 'rich', 'detoxify')"
        " if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
