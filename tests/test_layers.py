"""The layer contract of shared/DESIGN.md ("Dependency direction"), checked on the source.

The core of `auditor` (all of it but the CLI and `auditor.simhub`) imports none of the
other three packages, nor the CLI or the simulated Hub; `crawlers` and `reports` do not know of
each other or of `schedules`; only the CLI sits on top of everything. Imports are read with `ast`
from every file, at any depth, so a lazy import inside a function counts like one at the top, and
nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("auditor", "crawlers", "reports", "schedules")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for every import in `source`, relative ones made absolute. `from x import y`
    yields `x` and `x.y`, since `y` may be a submodule (`from auditor import cli`)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


#: Parts of the `auditor` package that are not its core: the CLI (with `python -m auditor`, which
#: only calls it) and the simulated Hub.
NOT_CORE = ("auditor.cli", "auditor.__main__", "auditor.simhub")


def _is_core(module: str) -> bool:
    return _within(module, "auditor") and not any(_within(module, edge) for edge in NOT_CORE)


#: (who, which of our modules, what they must not import)
RULES: list[tuple[str, Callable[[str], bool], tuple[str, ...]]] = [
    ("the auditor core", _is_core, ("crawlers", "reports", "schedules", "auditor.cli", "auditor.simhub")),
    ("crawlers", lambda m: _within(m, "crawlers"), ("reports", "schedules", "auditor.cli", "auditor.simhub")),
    ("reports", lambda m: _within(m, "reports"), ("crawlers", "schedules", "auditor.cli", "auditor.simhub")),
    ("schedules", lambda m: _within(m, "schedules"), ("auditor.cli",)),
]

#: Edges that break the contract today, each as (importing module, imported module): the issue
#: that removes it. Keep this short and explicit; an edge that disappears must leave the list.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


def _all_imports() -> dict[str, list[tuple[int, str]]]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            found[module] = list(imported_modules(path.read_text(encoding="utf-8"), module, path.name == "__init__.py"))
    return found


def test_each_layer_imports_only_what_it_may() -> None:
    imports = _all_imports()
    broken, excused = [], set()
    for who, member, forbidden in RULES:
        for module, edges in imports.items():
            if not member(module):
                continue
            for line, target in edges:
                if not any(_within(target, f) for f in forbidden):
                    continue
                if (module, target) in KNOWN_EXCEPTIONS:
                    excused.add((module, target))
                else:
                    broken.append(f"{module}:{line} imports {target} ({who} must not)")
    assert broken == []
    assert set(KNOWN_EXCEPTIONS) == excused, "a known exception no longer happens: remove it from KNOWN_EXCEPTIONS"


def test_the_scan_sees_every_package_and_the_clis_lazy_imports() -> None:
    """The contract test would pass vacuously if the scan missed files or function-level imports:
    the CLI imports crawlers, reports and schedules only inside its commands, and must be seen to."""
    imports = _all_imports()
    assert {m.split(".")[0] for m in imports} == set(PACKAGES)
    cli_targets = {t for m, edges in imports.items() if _within(m, "auditor.cli") for _, t in edges}
    for layer in ("crawlers", "reports", "schedules", "auditor.simhub"):
        assert any(_within(t, layer) for t in cli_targets), layer


def test_imports_are_found_at_any_depth_and_in_every_form() -> None:
    source = (
        "import os\n"
        "def f():\n"
        "    from reports.terminal import make_console\n"
        "    class C:\n"
        "        def g(self):\n"
        "            import crawlers.hub as hub\n"
        "try:\n"
        "    from auditor import cli\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import drift\n"
        "from ..simhub import SimHub\n"
    )
    found = {t for _, t in imported_modules(source, "auditor.store.views")}
    assert {"os", "reports.terminal", "crawlers.hub", "auditor.cli", "auditor.store.drift", "auditor.simhub"} <= found
    package = {t for _, t in imported_modules("from .lineage import x", "auditor.store", is_package=True)}
    assert "auditor.store.lineage" in package
    assert _is_core("auditor") and _is_core("auditor.store.database") and _is_core("auditor.client")
    assert not any(_is_core(m) for m in ("auditor.cli.app", "auditor.__main__", "auditor.simhub.server"))
