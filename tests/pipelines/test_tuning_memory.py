"""Memory stays flat across trials: the session is cleared and nothing accumulates per trial.

Ten tiny LeNet-5 trials in this process; each trial records the process RSS when it starts
(``trial_<id>/worker.json``, after KerasTuner cleared the Keras session). Growth from trial 3
to trial 10 must stay far below what keeping every trial's models/graphs alive would cost
(measured: ~30 MiB; ~80 MiB before the custom-gradient janitor of ``pipelines.tuning.memory``).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from pipelines import data

    path = tmp_path_factory.mktemp("tfds")
    data.load("mnist5k", data_dir=path)
    return path


@pytest.mark.slow
def test_rss_does_not_grow_over_ten_trials(data_dir, tmp_path):
    from pipelines.lenet5 import SPEC
    from pipelines.tuning.search import run_search

    config = SPEC.default_config(
        run="mem", epochs=1, batch_size=32, max_train_examples=64, validation_steps=1,
        augment=False, verbose=0, lr_schedule="constant", data_dir=str(data_dir))
    from pipelines.tuning.memory import _registry

    def custom_gradients():
        return {k for k in _registry() if k.startswith("CustomGradient-")}

    before = custom_gradients()
    result = run_search(SPEC, config, tuner="random", max_trials=10, workdir=tmp_path,
                        set_keys=["epochs", "batch_size"])
    # No trial left a tf.custom_gradient registration (each pins a traced graph) behind.
    assert custom_gradients() == before
    rows = result.rows
    assert [r["status"] for r in rows] == ["COMPLETED"] * 10
    rss = [r["rss_mb_at_start"] for r in rows]
    assert all(isinstance(v, float) and v > 50 for v in rss), rss
    growth = rss[9] - rss[2]
    print(f"RSS at trial starts (MiB): {rss}; growth trial 3→10: {growth:.1f}")
    assert growth < 150, f"RSS grew {growth:.1f} MiB from trial 3 to 10: {rss}"
