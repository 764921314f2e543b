"""Run directory layout: ``<workdir>/runs/<pipeline>/<run>/``.

    config.yaml             the resolved config of the run
    checkpoints/            resumable training state (tf.train.CheckpointManager)
    tensorboard/train/      TensorBoard event files (train metrics, learning rate)
    tensorboard/validation/ TensorBoard event files (validation metrics)
    metrics.json            final train/val/test metrics, history, steps, timings
    plots/*.png             training curves (matplotlib, Agg backend)

Multi-worker: only the chief writes here. Other workers write what TensorFlow requires every
worker to write (checkpoints) into a private temporary directory that is deleted afterwards
(TensorFlow's documented pattern for MultiWorkerMirroredStrategy).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any

__all__ = ["RunDir", "write_json_atomic", "write_text_atomic"]


def write_text_atomic(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Write ``text`` (UTF-8) to ``path`` via a unique temp file in the same directory +
    ``os.replace``: readers see the old file or the new one, never a partial write."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: pathlib.Path, data: Any) -> pathlib.Path:
    """Write JSON (indented) to ``path`` atomically (:func:`write_text_atomic`)."""
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=float)
                             + "\n")


@dataclasses.dataclass
class RunDir:
    """Paths of one run; ``chief=False`` redirects checkpoint writes to a temp directory."""

    root: pathlib.Path
    chief: bool = True
    _scratch: pathlib.Path | None = None

    @classmethod
    def create(cls, workdir: str | os.PathLike, pipeline: str, run: str, *, chief: bool = True,
               worker_index: int = 0) -> RunDir:
        root = pathlib.Path(workdir).resolve() / "runs" / pipeline / run
        rd = cls(root=root, chief=chief)
        if chief:
            for d in (rd.checkpoints, rd.tensorboard / "train", rd.tensorboard / "validation",
                      rd.plots):
                d.mkdir(parents=True, exist_ok=True)
        else:
            rd._scratch = pathlib.Path(
                tempfile.mkdtemp(prefix=f"deepline-worker{worker_index}-")
            )
        return rd

    @property
    def config_yaml(self) -> pathlib.Path:
        return self.root / "config.yaml"

    @property
    def checkpoints(self) -> pathlib.Path:
        """Where checkpoints are READ from (the chief's directory, shared by all workers)."""
        return self.root / "checkpoints"

    @property
    def checkpoint_write_dir(self) -> pathlib.Path:
        """Where this process WRITES checkpoints: chief → checkpoints/, worker → temp dir."""
        if self.chief:
            return self.checkpoints
        assert self._scratch is not None
        return self._scratch / "checkpoints"

    @property
    def tensorboard(self) -> pathlib.Path:
        return self.root / "tensorboard"

    @property
    def metrics_json(self) -> pathlib.Path:
        return self.root / "metrics.json"

    @property
    def plots(self) -> pathlib.Path:
        return self.root / "plots"

    def cleanup(self) -> None:
        """Remove a worker's scratch directory (no-op on the chief)."""
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
