"""Every file the store keeps beside its DuckDB file, named in one place.

`<store>.wal` is DuckDB's write-ahead log; `<store>.readers` the readers' lease file (a writer
waits while a reader holds it: `auditor.store.database`); `<store>.lock` and `<store>.daemon` the
nightly cycle's and the scheduler's locks (`schedules.lock`); `<store>.rewrite` and
`<store>.before-rewrite` the new file and the kept original of `auditor store rewrite`. Moving a
store means moving these with it; deleting an empty store deletes them too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Sidecars:
    wal: Path
    readers: Path
    cycle_lock: Path
    daemon_lock: Path
    rewrite: Path
    rewrite_wal: Path
    before_rewrite: Path


def sidecars(store_path: Path) -> Sidecars:
    """The files beside the store at `store_path`.

    >>> sidecars(Path("/data/auditor.duckdb")).cycle_lock
    PosixPath('/data/auditor.duckdb.lock')
    """
    path = Path(store_path)

    def beside(suffix: str) -> Path:
        return path.with_name(path.name + suffix)

    return Sidecars(
        wal=beside(".wal"),
        readers=beside(".readers"),
        cycle_lock=beside(".lock"),
        daemon_lock=beside(".daemon"),
        rewrite=beside(".rewrite"),
        rewrite_wal=beside(".rewrite.wal"),
        before_rewrite=beside(".before-rewrite"),
    )
