"""The drift plot: every audited derivative's change against its parent, per family."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from auditor.errors import AuditorError

if TYPE_CHECKING:
    from auditor.analysis.drift import DriftRow


def plot_drift(rows: Sequence[DriftRow], path: Path) -> None:
    """A strip plot per family of the change of rate against the parent (points), drifted ones marked;
    PNG or SVG by the file's suffix."""
    suffix = path.suffix.lower()
    if suffix not in (".png", ".svg"):
        raise AuditorError(f"cannot write a plot to {path}", hint="name a .png or .svg file")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = sorted({r.family or "?" for r in rows}) or ["(none)"]
    column = {family: x for x, family in enumerate(families)}
    figure, axes = plt.subplots(figsize=(max(4.0, 1.6 * len(families) + 2), 4.5), dpi=120)
    for drifted, colour, label in ((False, "#8a8a8a", "not drifted"), (True, "#c0392b", "drifted")):
        chosen = [r for r in rows if r.drifted is drifted]
        # A deterministic jitter, so the same store draws the same picture.
        xs = [column[r.family or "?"] + ((zlib.crc32(r.child.encode()) % 1000) / 1000 - 0.5) * 0.5 for r in chosen]
        if chosen:
            axes.scatter(xs, [r.delta * 100 for r in chosen], s=14, color=colour, alpha=0.75, label=label)
    axes.axhline(0, color="black", linewidth=0.8)
    axes.set_xticks(range(len(families)), families)
    axes.set_ylabel("toxicity rate, derivative minus parent (points)")
    axes.set_title(f"Drift of {len(rows)} audited derivatives against their parents")
    if rows:
        axes.legend(loc="upper right", frameon=False)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format=suffix[1:], metadata={"Date": None} if suffix == ".svg" else None)
    plt.close(figure)
