"""The same custom loop under MirroredStrategy (2 logical CPUs) and MultiWorkerMirroredStrategy."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pipelines.strategy import cluster_spec_from_env, is_chief, select_strategy
from pipelines.trainer import train
from tests.pipelines._helpers import HERE, mnist5k_dir, tiny_config  # noqa: F401
from tests.ports import free_ports


def test_select_strategy_rules():
    assert select_strategy({}) is tf.distribute.get_strategy()
    assert is_chief(tf.distribute.get_strategy())
    assert cluster_spec_from_env({"TF_CONFIG": ""}) is None
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        cluster_spec_from_env({"TF_CONFIG": "{oops"})
    with pytest.raises(ValueError, match="'cluster' mapping"):
        cluster_spec_from_env({"TF_CONFIG": '{"task": {}}'})
    one = {"TF_CONFIG": json.dumps({"cluster": {"worker": ["localhost:1"]},
                                    "task": {"type": "worker", "index": 0}})}
    assert select_strategy(one) is tf.distribute.get_strategy()  # one task: no cluster


@pytest.mark.parametrize("cluster,task_type,task_id,chief", [
    ({"worker": ["a:1", "b:1"]}, "worker", 0, True),
    ({"worker": ["a:1", "b:1"]}, "worker", 1, False),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "chief", 0, True),
    ({"chief": ["c:1"], "worker": ["a:1"]}, "worker", 0, False),
])
def test_is_chief(cluster, task_type, task_id, chief):
    class FakeStrategy:
        cluster_resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec(cluster), task_type=task_type, task_id=task_id)

    assert is_chief(FakeStrategy()) is chief


def test_mirrored_matches_single_device(tmp_path, mnist5k_dir):  # noqa: F811
    """Per-replica loss / GLOBAL batch + summed gradients = the single-device step exactly."""
    config = tiny_config(mnist5k_dir, epochs=1, export=False, test=False)
    single = train(config, tmp_path / "a", strategy=tf.distribute.get_strategy())
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    mirrored = train(config, tmp_path / "b", strategy=mirrored_strategy)
    assert mirrored_strategy.num_replicas_in_sync == 2
    assert json.loads((tmp_path / "b/runs/lenet5/default/metrics.json").read_text())[
        "num_replicas"] == 2
    assert mirrored.global_step == single.global_step == 3
    for a, b in zip(single.model.get_weights(), mirrored.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert mirrored.metrics[key] == pytest.approx(single.metrics[key], rel=1e-4, abs=1e-5)


def test_multi_worker_two_processes(tmp_path, mnist5k_dir):  # noqa: F811
    workers = [f"localhost:{p}" for p in free_ports(2)]
    procs = []
    try:
        for index in range(2):
            env = dict(os.environ, TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
            procs.append(subprocess.Popen(
                [sys.executable, str(HERE / "_mw_worker.py"), str(tmp_path), str(mnist5k_dir),
                 str(tmp_path / f"w{index}.npz")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        outputs = [p.communicate(timeout=240)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-3000:]
    w0, w1 = np.load(tmp_path / "w0.npz"), np.load(tmp_path / "w1.npz")
    assert int(w0["num_replicas"]) == 2 and int(w0["global_step"]) == int(w1["global_step"]) == 8
    weights = [k for k in w0.files if k.startswith("w")]
    assert len(weights) == 10  # 2 conv + 3 dense layers, kernel and bias each
    for k in weights:
        np.testing.assert_array_equal(w0[k], w1[k])
    losses = w0["losses"]
    np.testing.assert_array_equal(losses, w1["losses"])  # the reduced (global) loss
    assert losses[-2:].mean() < losses[:2].mean() - 0.1
    # Only the chief (worker 0) wrote the run directory; the other's scratch dir is gone.
    run = tmp_path / "runs" / "lenet5" / "default"
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-8")
    assert json.loads((run / "metrics.json").read_text())["strategy"] == (
        "MultiWorkerMirroredStrategy")
