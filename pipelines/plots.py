"""Training curves as PNG files (matplotlib, Agg backend: no display needed).

``plot_history(history, out_dir)`` writes ``training_curves.png`` (one panel per metric, train
and validation curves over epochs) and ``<metric>.png`` per metric. ``pyplot()`` and
``save_figure(fig, path)`` are what every pipeline's plots use: the Agg backend, and atomic PNG
writes (a temporary file renamed over ``path``, so a reader never sees half a file).
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence
from typing import Any

__all__ = ["plot_history", "pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs) -> pathlib.Path:
    """Write ``fig`` to ``path`` atomically (parents created), close it, return the path."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, **savefig_kwargs)
        os.replace(tmp, path)
    finally:
        pyplot().close(fig)
        tmp.unlink(missing_ok=True)
    return path


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
    plt = pyplot()
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
    written.append(save_figure(fig, out / "training_curves.png", dpi=80))
    for name in names:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        draw(ax, name)
        fig.tight_layout()
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        written.append(save_figure(fig, out / f"{safe}.png", dpi=80))
    return written
