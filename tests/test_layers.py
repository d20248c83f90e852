"""The layer contract of shared/DESIGN.md ("Dependency direction"), checked on the source.

The core of `auditor` (all of it but the CLI and `auditor.simhub`) imports none of the
other three packages, nor the CLI or the simulated Hub; `crawlers` and `reports` do not know of
each other or of `schedules`; only the CLI sits on top of everything. Imports are read with `ast`
from every file, at any depth, so a lazy import inside a function counts like one at the top, and
nothing is imported to check it.
"""

from __future__ import annotations

import ast
import re
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
        "            import crawlers.client as hub\n"
        "try:\n"
        "    from auditor import cli\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import drift\n"
        "from ..simhub import SimHub\n"
    )
    found = {t for _, t in imported_modules(source, "auditor.store.views")}
    assert {
        "os",
        "reports.terminal",
        "crawlers.client",
        "auditor.cli",
        "auditor.store.drift",
        "auditor.simhub",
    } <= found
    package = {t for _, t in imported_modules("from .crawls import x", "auditor.store", is_package=True)}
    assert "auditor.store.crawls" in package
    assert _is_core("auditor") and _is_core("auditor.store.database") and _is_core("auditor.client")
    assert not any(_is_core(m) for m in ("auditor.cli.app", "auditor.__main__", "auditor.simhub.server"))


# --- SQL lives in the store ------------------------------------------------------------------

#: A string constant that is a SQL statement: it starts (after whitespace, in any case) with a
#: statement's opening words in SQL's shape (`SELECT ... FROM`, `SELECT 1`, `INSERT INTO`,
#: `UPDATE t SET`, `DELETE FROM`, `WITH x AS (`, `CREATE [OR REPLACE] TABLE|VIEW|MACRO ...`,
#: `DROP`/`ALTER TABLE`). Prose that opens with the same word ("With --pending: ...", "Update the
#: index") does not have the shape.
SQL_STATEMENT = re.compile(
    r"""^\s*(
        SELECT\b[\s\S]*\bFROM\s+\w
      | SELECT\s+(\d|\$|\?|\w+\()
      | INSERT\s+(OR\s+\w+\s+)?INTO\s
      | UPDATE\s+\w+\s+SET\s
      | DELETE\s+FROM\s
      | WITH\s+(RECURSIVE\s+)?\w+\s+AS\s*(NOT\s+)?(MATERIALIZED\s*)?\(
      | CREATE\s+(OR\s+REPLACE\s+)?(TEMP(ORARY)?\s+)?(TABLE|VIEW|MACRO|INDEX|SEQUENCE|TYPE|SCHEMA)\s
      | (DROP|ALTER)\s+(TABLE|VIEW|MACRO|INDEX)\s
    )""",
    re.IGNORECASE | re.VERBOSE,
)

#: Where SQL may be written: the store, and the simulated Hub, which serves its own state.
SQL_HOMES = ("auditor.store", "auditor.simhub")


def _docstrings(tree: ast.AST) -> set[int]:
    """The ids of the docstring constants of a module and of its classes and functions."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, start) of every string constant in `source` that is a SQL statement, docstrings
    excepted. An f-string counts by its first literal part, so `f"SELECT {x} FROM t"` is found; a
    query held in a variable (the `auditor sql` command's, the user's own) is not a constant."""
    tree = ast.parse(source)
    skipped = _docstrings(tree)  # and the literal parts of f-strings, read with their f-string
    skipped |= {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            parts = node.values
            text = parts[0].value if parts and isinstance(parts[0], ast.Constant) else ""
        elif isinstance(node, ast.Constant) and id(node) not in skipped:
            text = node.value
        else:
            continue
        if isinstance(text, str) and SQL_STATEMENT.match(text):
            found.append((node.lineno, text.strip().splitlines()[0][:60]))
    return sorted(found)


def test_no_module_outside_the_store_holds_sql() -> None:
    """The issue-12 rule: queries live in `auditor/store/`; the rest of the code calls functions
    that take the open store. Examples in docstrings and the docs are allowed."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = _module_name(path)
            if any(_within(module, home) for home in SQL_HOMES):
                continue
            for line, text in sql_strings(path.read_text(encoding="utf-8")):
                found.append(f"{module}:{line} {text}")
    assert found == []


def test_the_sql_scan_finds_queries_in_every_form() -> None:
    """The scan would pass vacuously if it missed the forms queries take; docstrings and prose are
    not queries."""
    source = (
        '"""Module doc: SELECT * FROM models is an example."""\n'
        "def f(store, t):\n"
        '    """SELECT in a docstring is an example."""\n'
        '    store.query("select 1")\n'
        '    q = """\n        WITH x AS (SELECT 1) SELECT * FROM x\n    """\n'
        '    store.query(f"  INSERT INTO t VALUES ({t})")\n'
        '    store.query("UPDATE t SET a = 1 " "WHERE b = 2")\n'
        '    message = "the WITH clause is explained in docs/"\n'
        '    hint = "With --pending: select the models from the plan"\n'
        '    other = "Update the index, then delete from the cache"\n'
        "    store.query(t)\n"
    )
    found = [text.split()[0].upper() for _, text in sql_strings(source)]
    assert found == ["SELECT", "WITH", "INSERT", "UPDATE"]
    # The store itself is scanned the same way, and holds queries: the rule is not vacuous.
    store_sql = [s for p in (ROOT / "auditor" / "store").rglob("*.py") for s in sql_strings(p.read_text("utf-8"))]
    assert len(store_sql) > 20


def test_the_audit_job_runs_without_the_store() -> None:
    """`run_audit` is what a worker process or another machine runs: nothing it reaches, at any
    depth and lazily or not, may import the store or DuckDB (it writes through a sink)."""
    imports = _all_imports()
    reached, todo = set(), ["auditor.audit.job"]
    while todo:
        module = todo.pop()
        if module in reached:
            continue
        reached.add(module)
        # `from x import y` yields x and x.y; only our own modules are followed
        todo += [t for _, t in imports.get(module, []) if t in imports]
    targets = {t for m in reached for _, t in imports[m]}
    assert "auditor.audit.sink" in reached and "auditor.audit.loader" in reached  # the walk went deep
    assert not {t for t in targets if _within(t, "auditor.store") or _within(t, "duckdb")}
    assert not any(_within(m, "auditor.store") for m in reached)
