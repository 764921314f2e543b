"""Training curves as PNG files (matplotlib, Agg backend: no display needed).

``plot_history(history, out_dir)`` writes ``training_curves.png`` (one panel per metric, train
and validation curves over epochs) and ``<metric>.png`` per metric.
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Any

__all__ = ["plot_history"]


def _metric_names(history: Sequence[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in history:
        for key in row:
            base = key[4:] if key.startswith("val_") else key
            if base not in ("epoch", "time_s", "global_step") and base not in names:
                names.append(base)
    return names


def plot_history(history: Sequence[dict[str, Any]], out_dir: str | pathlib.Path
                 ) -> list[pathlib.Path]:
    """Write the PNGs for ``history`` (a list of per-epoch log dicts) and return their paths."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not history:
        return []
    epochs = [int(row.get("epoch", i + 1)) for i, row in enumerate(history)]
    names = _metric_names(history)
    written = []

    def draw(ax, name):
        for key, label in ((name, "train"), ("val_" + name, "validation")):
            pts = [(e, row[key]) for e, row in zip(epochs, history, strict=True) if key in row]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(True, alpha=0.3)
        ax.legend()

    cols = min(3, len(names))
    rows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names, strict=False):
        draw(ax, name)
    fig.tight_layout()
    path = out / "training_curves.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    for name in names:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw(ax, name)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        p = out / f"{safe}.png"
        fig.savefig(p, dpi=80)
        plt.close(fig)
        written.append(p)
    return written
