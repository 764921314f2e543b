"""End to end through the command line: python -m pipelines ... --sweep, then a resume rerun."""

import json
import subprocess
import sys

import yaml

from tests.pipelines._helpers import mnist5k_dir  # noqa: F401


def test_cli_sweep_trains_each_value_and_writes_summary(tmp_path, mnist5k_dir):  # noqa: F811
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "epochs": 1, "batch_size": 32, "max_train_examples": 64, "validation_steps": 1,
        "augment": False, "verbose": 0, "data_dir": str(mnist5k_dir), "export": False,
    }))
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines", "lenet5", "--config", str(cfg), "--run", "s",
         "--set", "test=false", "--sweep", "pooling=max,l2", "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs" / "lenet5"
    for value in ("max", "l2"):
        run = runs / f"s-pooling-{value}"
        assert yaml.safe_load((run / "config.yaml").read_text())["pooling"] == value
        assert json.loads((run / "metrics.json").read_text())["global_step"] == 2
    summary = json.loads((runs / "sweeps" / "s-pooling.json").read_text())
    assert summary["key"] == "pooling" and summary["values"] == ["max", "l2"]
    assert [r["run"] for r in summary["runs"]] == ["s-pooling-max", "s-pooling-l2"]
    assert all(0.0 <= r["metrics"]["val_accuracy"] <= 1.0 for r in summary["runs"])
    table = (runs / "sweeps" / "s-pooling.md").read_text().splitlines()
    assert table[2].startswith("| pooling | run | loss | accuracy | val_loss | val_accuracy")
    assert table[4].startswith("| max | s-pooling-max |")
    assert table[5].startswith("| l2 | s-pooling-l2 |")
    assert not (tmp_path / "models").exists()  # export=false honoured
