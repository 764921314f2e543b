"""deepline-tune in process: search spaces, objectives, errors, tiny searches end to end.

Every search here trains LeNet-5 for 1 epoch of 2 steps (64 images, batch 32) on mnist5k.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re

import pytest

from pipelines.config import ConfigError


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from pipelines import data

    path = tmp_path_factory.mktemp("tfds")
    data.load("mnist5k", data_dir=path)
    return path


def tiny_sets(data_dir) -> list[str]:
    values = ["epochs=1", "batch_size=32", "max_train_examples=64", "validation_steps=1",
              "augment=false", "verbose=0", "lr_schedule=constant", f"data_dir={data_dir}"]
    return [arg for v in values for arg in ("--set", v)]


def tiny_config(data_dir, **overrides):
    from pipelines.lenet5 import SPEC

    values = dict(epochs=1, batch_size=32, max_train_examples=64, validation_steps=1,
                  augment=False, verbose=0, lr_schedule="constant", data_dir=str(data_dir))
    values.update(overrides)
    return SPEC.default_config(**values)


def hparams_events(logdir: pathlib.Path) -> dict:
    """tag → HParamsPluginData of the hparams summaries written directly in ``logdir``."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import plugin_data_pb2

    found = {}
    for f in sorted(logdir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(f)):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == "hparams":
                    found[v.tag] = plugin_data_pb2.HParamsPluginData.FromString(
                        v.metadata.plugin_data.content)
    return found


# -- search space --------------------------------------------------------------------------
def test_lenet5_space_maps_hyperparameters_to_config(data_dir):
    import keras_tuner as kt

    from pipelines.lenet5 import SPEC
    from pipelines.tuning.space import apply_search_space, validate_search_space

    base = tiny_config(data_dir)
    hp = kt.HyperParameters()
    cfg = apply_search_space(SPEC, base, hp)
    assert sorted(hp.values) == ["batch_size", "epochs", "learning_rate", "pooling", "width"]
    assert (cfg.conv_filters, cfg.dense_units, cfg.learning_rate) == ((6, 16), (120, 84), 4e-3)
    assert (cfg.pooling, cfg.batch_size, cfg.epochs) == ("max", 64, 30)
    hp.values.update(width=0.5, pooling="l2", learning_rate=1e-4, batch_size=128, epochs=5)
    cfg = apply_search_space(SPEC, base, hp)
    assert (cfg.conv_filters, cfg.dense_units) == ((3, 8), (60, 42))
    assert (cfg.pooling, cfg.learning_rate, cfg.batch_size, cfg.epochs) == ("l2", 1e-4, 128, 5)
    assert cfg.max_train_examples == 64  # untouched base values survive
    # defaults + width 3 + learning_rate 2 + pooling 3 + batch_size 3 + epochs 2 = 14 configs
    assert validate_search_space(SPEC, base) == 14


def test_set_keys_pin_hyperparameters(data_dir):
    from pipelines.lenet5 import SPEC
    from pipelines.tuning.space import fixed_hyperparameters, validate_search_space

    base = tiny_config(data_dir, batch_size=16, pooling="average")
    fixed = fixed_hyperparameters(SPEC, base, ["batch_size", "pooling", "max_train_examples"])
    assert fixed.values == {"batch_size": 16, "pooling": "average"}
    # Hyperband owns the epoch budget: `epochs` is pinned to max_epochs.
    fixed = fixed_hyperparameters(SPEC, base, [], max_epochs=4)
    assert fixed.values == {"epochs": 4}
    assert validate_search_space(SPEC, base, fixed) == 12


def _spec_with(space):
    from pipelines.lenet5 import SPEC

    return dataclasses.replace(SPEC, search_space=space)


def test_bad_search_space_fails_before_any_trial(data_dir, tmp_path):
    from pipelines.tuning.search import run_search
    from pipelines.tuning.space import SearchSpaceError

    base = tiny_config(data_dir)

    def unknown_key(hp):
        return {"learning_rte": hp.Float("learning_rate", 1e-4, 1e-2)}

    with pytest.raises(SearchSpaceError, match=r"unknown config key\(s\) 'learning_rte'.*"
                                               r"valid keys: .*learning_rate"):
        run_search(_spec_with(unknown_key), base, tuner="random", max_trials=1,
                   workdir=tmp_path)

    def zero_batch(hp):  # the default (64) is fine, the extreme 0 is not
        return {"batch_size": hp.Choice("batch_size", [64, 0])}

    with pytest.raises(SearchSpaceError, match=r"batch_size=0.*'batch_size' must be >= 1"):
        run_search(_spec_with(zero_batch), base, tuner="random", max_trials=1, workdir=tmp_path)

    def bad_range(hp):
        return {"epochs": hp.Int("epochs", 5, 1)}

    with pytest.raises(SearchSpaceError, match="min_value 5 is greater than the max_value 1"):
        run_search(_spec_with(bad_range), base, tuner="random", max_trials=1, workdir=tmp_path)

    with pytest.raises(SearchSpaceError, match="declares no search space"):
        run_search(_spec_with(None), base, tuner="random", max_trials=1, workdir=tmp_path)
    assert not (tmp_path / "runs").exists()  # nothing ran, nothing was written


def test_objective_must_be_reported(data_dir, tmp_path):
    from pipelines.lenet5 import SPEC
    from pipelines.tuning.space import SearchSpaceError, resolve_objective

    base = tiny_config(data_dir)
    obj = resolve_objective(SPEC, base, None)
    assert (obj.name, obj.direction) == ("val_accuracy", "max")
    obj = resolve_objective(SPEC, base, "val_loss")
    assert (obj.name, obj.direction) == ("val_loss", "min")
    obj = resolve_objective(SPEC, base, "accuracy:min")
    assert (obj.name, obj.direction) == ("accuracy", "min")
    with pytest.raises(SearchSpaceError) as err:
        resolve_objective(SPEC, base, "val_acc")
    assert str(err.value) == ("objective 'val_acc' is not reported by lenet5; available: "
                              "loss, accuracy, val_loss, val_accuracy")
    with pytest.raises(SearchSpaceError, match="available: loss, accuracy .*validation=false"):
        resolve_objective(SPEC, dataclasses.replace(base, validation=False), None)
    with pytest.raises(SearchSpaceError, match="direction must be 'min' or 'max'"):
        resolve_objective(SPEC, base, "val_loss:down")


def test_cli_errors_exit_2_before_training(data_dir, tmp_path, capsys):
    from pipelines.tuning.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["lenet5", "--tuner", "grid", "--workdir", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("deepline-tune: error: argument --tuner: invalid choice: 'grid'")
    assert all(name in err for name in ("hyperband", "bayesian", "random"))

    with pytest.raises(SystemExit) as exc:
        main(["lenet5", "--tuner", "random", "--objective", "val_acc",
              "--workdir", str(tmp_path), *tiny_sets(data_dir)])
    assert exc.value.code == 2
    assert capsys.readouterr().err == (
        "deepline-tune: error: objective 'val_acc' is not reported by lenet5; available: "
        "loss, accuracy, val_loss, val_accuracy\n")

    with pytest.raises(SystemExit) as exc:
        main(["lenet5", "--set", "poolng=max", "--workdir", str(tmp_path)])
    assert exc.value.code == 2
    assert "unknown config key 'poolng'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


# -- searches --------------------------------------------------------------------------------
def test_random_search_end_to_end_with_retrain(data_dir, tmp_path, capsys):
    import yaml

    from pipelines.cli import build_config
    from pipelines.tuning.cli import main

    rc = main(["lenet5", "--tuner", "random", "--max-trials", "3", "--run", "e2e",
               "--workdir", str(tmp_path), "--retrain-best", *tiny_sets(data_dir)])
    assert rc == 0
    out = capsys.readouterr().out
    tune_dir = tmp_path / "runs" / "lenet5" / "tune-e2e"
    results = json.loads((tune_dir / "results.json").read_text())
    rows = results["trials"]
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"COMPLETED"}
    assert (results["objective"], results["direction"]) == ("val_accuracy", "max")
    # The table printed: header + separator + one line per trial.
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert table[0] == ("| trial | epochs | batch_size | width | learning_rate | pooling | "
                        "val_accuracy | status | tuner |")
    assert len(table) == 2 + 3
    distinct = {(r["hyperparameters"]["width"], r["hyperparameters"]["pooling"],
                 r["hyperparameters"]["learning_rate"]) for r in rows}
    assert len(distinct) == 3
    for row in rows:
        # --set pinned these hyperparameters.
        assert (row["hyperparameters"]["epochs"], row["hyperparameters"]["batch_size"]) == (1, 32)
        run = tune_dir / "runs" / "lenet5" / f"trial_{row['trial_id']}"
        metrics = json.loads((run / "metrics.json").read_text())
        # The oracle's score is the trainer's own validation accuracy of that trial.
        assert row["score"] == pytest.approx(metrics["history"][-1]["val_accuracy"])
        trial_cfg = yaml.safe_load((run / "config.yaml").read_text())
        w = row["hyperparameters"]["width"]
        assert trial_cfg["conv_filters"] == [max(1, round(6 * w)), max(1, round(16 * w))]
        assert trial_cfg["pooling"] == row["hyperparameters"]["pooling"]
        assert trial_cfg["learning_rate"] == pytest.approx(row["hyperparameters"]["learning_rate"])
        assert (trial_cfg["export"], trial_cfg["test"]) == (False, False)
        # TensorBoard HParams: one session per trial, holding the trial's values.
        events = hparams_events(run / "tensorboard")
        start = events["_hparams_/session_start_info"].session_start_info
        assert start.hparams["pooling"].string_value == row["hyperparameters"]["pooling"]
        assert start.hparams["learning_rate"].number_value == pytest.approx(
            row["hyperparameters"]["learning_rate"])
        assert "_hparams_/session_end_info" in events
        assert (run / "tensorboard" / "validation").is_dir()
    experiment = hparams_events(tune_dir / "runs")["_hparams_/experiment"].experiment
    assert {h.name for h in experiment.hparam_infos} >= {"width", "learning_rate", "pooling"}

    best = max(rows, key=lambda r: r["score"])
    assert results["best_trial"] == best["trial_id"]
    # best.yaml is a full config accepted by the training CLI's config resolution.
    cfg = build_config("lenet5", config_path=str(tune_dir / "best.yaml"))
    hp = best["hyperparameters"]
    assert (cfg.pooling, cfg.batch_size, cfg.epochs) == (hp["pooling"], 32, 1)
    assert cfg.learning_rate == pytest.approx(hp["learning_rate"])
    assert cfg.conv_filters == (max(1, round(6 * hp["width"])), max(1, round(16 * hp["width"])))
    assert (cfg.run, cfg.export, cfg.test, cfg.max_train_examples) == (
        f"tune-e2e-best-{best['trial_id']}", True, True, 64)
    # --retrain-best trained that config with the normal trainer and exported it.
    best_run = tmp_path / "runs" / "lenet5" / f"tune-e2e-best-{best['trial_id']}"
    assert yaml.safe_load((best_run / "config.yaml").read_text()) == yaml.safe_load(
        (tune_dir / "best.yaml").read_text())
    exported = json.loads((best_run / "metrics.json").read_text())["export_path"]
    assert pathlib.Path(exported) == tmp_path / "models" / "lenet5" / "1"
    assert (pathlib.Path(exported) / "saved_model.pb").is_file()

    # A rerun with other settings is refused instead of mixing two searches.
    with pytest.raises(ConfigError, match=r"other settings \(tuner: 'random' → 'bayesian'"):
        from pipelines.lenet5 import SPEC
        from pipelines.tuning.search import run_search

        run_search(SPEC, dataclasses.replace(cfg, run="e2e", epochs=1, export=False,
                                             test=False),
                   tuner="bayesian", max_trials=3, workdir=tmp_path)


def test_hyperband_continues_checkpoints_and_bayesian_builds(data_dir, tmp_path, capsys):
    from pipelines.lenet5 import SPEC
    from pipelines.tuning import search

    base = tiny_config(data_dir, run="hb", batch_size=32, epochs=2)
    result = search.run_search(SPEC, base, tuner="hyperband", max_trials=3, workdir=tmp_path,
                               set_keys=["batch_size"], hyperband_factor=2)
    starts = re.findall(r"trial (\d) starts: (.*)", capsys.readouterr().out)
    rows = {r["trial_id"]: r for r in result.rows}
    assert len(rows) == 3 and {r["status"] for r in rows.values()} == {"COMPLETED"}
    # factor 2, max_epochs 2: two 1-epoch trials, then the better one continues to epoch 2.
    assert [rows[i]["epochs"] for i in ("0", "1", "2")] == [1, 1, 2]
    first = [rows["0"], rows["1"]]
    winner = max(first, key=lambda r: r["score"])
    assert rows["2"]["continues"] == winner["trial_id"]
    assert rows["2"]["hyperparameters"] == winner["hyperparameters"]
    run = result.tune_dir / "runs" / "lenet5" / "trial_2"
    metrics = json.loads((run / "metrics.json").read_text())
    # It resumed from the parent's checkpoint (2 steps = 1 epoch) and trained epoch 2 only.
    assert metrics["resumed_from_step"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert rows["2"]["score"] == pytest.approx(metrics["history"][-1]["val_accuracy"])
    # Each trial's start line names the epochs it trains (not the fixed largest budget).
    assert [(tid, re.findall(r"epochs=(\d+)", text)) for tid, text in starts] == [
        ("0", ["1"]), ("1", ["1"]), ("2", ["2"])]
    assert starts[2][1].endswith(f"(continues trial {winner['trial_id']} from epoch 1)")
    assert result.best_config.epochs == rows[result.best_trial_id]["epochs"]

    obj = __import__("keras_tuner").Objective("val_loss", "min")
    hm = search.PipelineHyperModel(SPEC, base, tmp_path / "bo", objective="val_loss")
    tuner = search.build_tuner("bayesian", hm, obj, max_trials=4, tune_dir=tmp_path / "bo",
                               seed=1, fixed=__import__("keras_tuner").HyperParameters())
    assert isinstance(tuner, search.BayesianOptimization)
    assert tuner.oracle.max_trials == 4
    assert {p.name for p in tuner.oracle.get_space().space} == {
        "width", "learning_rate", "pooling", "batch_size", "epochs"}
    with pytest.raises(ConfigError, match="unknown tuner 'grid'; valid choices: hyperband, "
                                          "bayesian, random"):
        search.build_tuner("grid", hm, obj, max_trials=1, tune_dir=tmp_path / "x", seed=1,
                           fixed=None)


@pytest.mark.parametrize("pipeline", ["lenet5", "ksparse", "elman"])
def test_every_pipeline_space_is_valid_at_its_defaults(pipeline):
    from pipelines.registry import get_spec
    from pipelines.tuning.space import resolve_objective, validate_search_space

    spec = get_spec(pipeline)
    if spec.search_space is None:
        pytest.skip(f"{pipeline} declares no search space yet")
    config = spec.default_config()
    assert validate_search_space(spec, config) > 1
    objective = resolve_objective(spec, config, None)
    assert (objective.name, objective.direction) == (spec.monitor, spec.monitor_mode)


def test_distributed_role_from_environment():
    from pipelines.tuning.distributed import tuner_id, tuning_role

    assert tuning_role({}) == "single" and tuner_id({}) == "tuner0"
    net = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}
    assert tuning_role({**net, "KERASTUNER_TUNER_ID": "chief"}) == "chief"
    assert tuning_role({**net, "KERASTUNER_TUNER_ID": "tuner1"}) == "worker"
    assert tuner_id({**net, "KERASTUNER_TUNER_ID": "tuner1"}) == "tuner1"
    with pytest.raises(ConfigError, match="missing: KERASTUNER_TUNER_ID"):
        tuning_role(net)
    with pytest.raises(ConfigError, match="KERASTUNER_ORACLE_PORT must be a TCP port number, "
                                          "received 'http'"):
        tuning_role({**net, "KERASTUNER_ORACLE_PORT": "http", "KERASTUNER_TUNER_ID": "chief"})


def test_janitor_drops_only_the_trials_custom_gradients():
    import tensorflow as tf

    from pipelines.tuning.memory import TrialGradientJanitor, _registry

    @tf.custom_gradient
    def halve_grad(x):
        return x * 3.0, lambda dy: dy * 0.5

    def traced_gradient():
        @tf.function
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = halve_grad(x)
            return tape.gradient(y, x)

        return float(step(tf.constant(2.0)))

    assert traced_gradient() == 0.5  # registered before the "trial": must survive
    outside = {k for k in _registry() if k.startswith("CustomGradient-")}
    janitor = TrialGradientJanitor()
    janitor.begin()
    assert traced_gradient() == 0.5
    during = {k for k in _registry() if k.startswith("CustomGradient-")}
    assert len(during - outside) == 1
    assert janitor.end() == 1
    assert {k for k in _registry() if k.startswith("CustomGradient-")} == outside
    assert janitor.end() == 0  # ending twice is harmless


def test_trial_missing_objective_is_fatal_and_names_the_metrics(data_dir, tmp_path):
    import keras_tuner as kt

    from pipelines.lenet5 import SPEC
    from pipelines.tuning.hypermodel import PipelineHyperModel

    # Passes the up-front check only because it is bypassed here: the trial itself must stop
    # the search with the metrics it did report (e.g. a pipeline whose validation split is None).
    hm = PipelineHyperModel(SPEC, tiny_config(data_dir), tmp_path, objective="val_auc")
    hp = kt.HyperParameters()
    hp.Fixed("epochs", 1)  # otherwise the space's default (30 epochs) applies
    hp.Fixed("batch_size", 32)
    with pytest.raises(kt.errors.FatalValueError) as err:
        hm.fit(hp, None)
    assert str(err.value) == ("objective 'val_auc' is not reported by lenet5; available: "
                              "loss, accuracy, val_loss, val_accuracy")


def test_resuming_with_other_settings_is_refused_but_neutral_keys_may_change(data_dir, tmp_path):
    import keras_tuner as kt

    from pipelines.lenet5 import SPEC
    from pipelines.rundir import write_json_atomic
    from pipelines.tuning.search import _check_settings, _settings

    base = tiny_config(data_dir)
    obj = kt.Objective("val_accuracy", "max")
    fixed = kt.HyperParameters()
    write_json_atomic(tmp_path / "tune.json", _settings(SPEC, base, "random", obj, fixed, 3))
    neutral = dataclasses.replace(base, verbose=2, data_dir=str(tmp_path), export=False)
    _check_settings(tmp_path, _settings(SPEC, neutral, "random", obj, fixed, 3))
    changed = dataclasses.replace(base, label_smoothing=0.2)
    with pytest.raises(ConfigError, match=r"other settings \(config label_smoothing: 0.1 → 0.2\)"):
        _check_settings(tmp_path, _settings(SPEC, changed, "random", obj, fixed, 3))
    with pytest.raises(ConfigError, match=r"objective: 'val_accuracy' → 'val_loss'"):
        _check_settings(tmp_path, _settings(SPEC, base, "random",
                                            kt.Objective("val_loss", "min"), fixed, 3))


def test_failing_trials_stop_the_search_after_three(data_dir, tmp_path):
    import json as _json

    from pipelines.lenet5 import SPEC
    from pipelines.tuning.search import run_search

    def broken_data(config):  # every trial fails inside the trainer, after the checks
        raise ValueError(f"no data for pooling={config.pooling}")

    spec = dataclasses.replace(SPEC, make_datasets=broken_data)
    with pytest.raises(RuntimeError, match="Number of consecutive failures exceeded the limit "
                                           "of 3"):
        run_search(spec, tiny_config(data_dir, run="broken"), tuner="random", max_trials=5,
                   workdir=tmp_path)
    trials = sorted((tmp_path / "runs" / "lenet5" / "tune-broken").glob("trial_*/trial.json"))
    statuses = [_json.loads(p.read_text())["status"] for p in trials]
    # Three FAILED trials end the search (KerasTuner raises before saving the last trial's
    # final status, so that one still reads RUNNING on disk and is retried on a rerun).
    assert statuses == ["FAILED", "FAILED", "RUNNING"], statuses
    assert "ValueError: no data for pooling=" in _json.loads(trials[0].read_text())["message"]


class _Killed(BaseException):
    """Stands in for ``kill -9``: not an ``Exception``, so KerasTuner does not catch it."""


def test_crash_between_trial_file_and_oracle_state_does_not_rerun_the_trial(
        data_dir, tmp_path, monkeypatch, capsys):
    """KerasTuner writes ``trial.json`` (COMPLETED) before ``oracle.json`` and ``tuner0.json``:
    a process killed between them must still resume without rerunning that trial."""
    from keras_tuner.src.engine import oracle as oracle_module

    from pipelines.lenet5 import SPEC
    from pipelines.tuning.search import run_search

    save_trial = oracle_module.Oracle._save_trial

    def save_then_die(self, trial):
        save_trial(self, trial)
        if trial.status == "COMPLETED":
            raise _Killed(trial.trial_id)

    config = tiny_config(data_dir, run="crash")
    tune_dir = tmp_path / "runs" / "lenet5" / "tune-crash"
    with monkeypatch.context() as patch:
        patch.setattr(oracle_module.Oracle, "_save_trial", save_then_die)
        with pytest.raises(_Killed, match="0"):
            run_search(SPEC, config, tuner="random", max_trials=2, workdir=tmp_path,
                       set_keys={"epochs", "batch_size"})
    first = json.loads((tune_dir / "trial_0" / "trial.json").read_text())
    assert first["status"] == "COMPLETED"
    metrics_mtime = (tune_dir / "runs" / "lenet5" / "trial_0" / "metrics.json").stat().st_mtime_ns
    capsys.readouterr()

    result = run_search(SPEC, config, tuner="random", max_trials=2, workdir=tmp_path,
                        set_keys={"epochs", "batch_size"})
    out = capsys.readouterr().out
    assert "Reloading Tuner" in out
    assert "trial 0 starts" not in out and "trial 1 starts" in out
    assert json.loads((tune_dir / "trial_0" / "trial.json").read_text()) == first
    assert (tune_dir / "runs" / "lenet5" / "trial_0" / "metrics.json"
            ).stat().st_mtime_ns == metrics_mtime
    assert [r["trial_id"] for r in result.rows] == ["0", "1"]
    assert {r["status"] for r in result.rows} == {"COMPLETED"}
    assert result.tuner.oracle.end_order == ["0", "1"]
    assert result.rows[0]["hyperparameters"] != result.rows[1]["hyperparameters"]


def test_keras_tuner_state_writes_are_atomic_inside_the_block(tmp_path, monkeypatch):
    import keras_tuner as kt
    from keras_tuner.src import utils
    from keras_tuner.src.engine import trial as trial_module

    from pipelines import rundir
    from pipelines.tuning.state import atomic_state_writes

    original = utils.save_json
    path = tmp_path / "trial.json"
    path.write_text('{"status": "COMPLETED"}')
    trial = trial_module.Trial(hyperparameters=kt.HyperParameters(), trial_id="7", status="RUNNING")

    def power_cut(src, dst):
        raise OSError("no space left on device")

    with atomic_state_writes():
        with atomic_state_writes():  # blocks nest
            assert utils.save_json is not original
        assert utils.save_json is not original
        with monkeypatch.context() as patch:
            patch.setattr(rundir.os, "replace", power_cut)
            with pytest.raises(OSError, match="no space left"):
                trial.save(str(path))  # KerasTuner's own Stateful.save → utils.save_json
        assert path.read_text() == '{"status": "COMPLETED"}'  # the old state is intact
        assert sorted(p.name for p in tmp_path.iterdir()) == ["trial.json"]  # no temp left
        trial.save(str(path))
    assert utils.save_json is original
    assert json.loads(path.read_text())["trial_id"] == "7"


def test_reload_settles_only_trials_whose_own_file_says_they_ended():
    import collections
    from types import SimpleNamespace

    from pipelines.tuning.state import settle_finished_trials

    oracle = SimpleNamespace(
        trials={tid: SimpleNamespace(status=s) for tid, s in
                [("0", "COMPLETED"), ("1", "FAILED"), ("2", "INVALID"), ("3", "RUNNING")]},
        _retry_queue=["0", "1", "2", "3"], end_order=["1"],
        _run_times=collections.defaultdict(int, {"0": 0, "1": 1}))
    assert settle_finished_trials(oracle) == ["0", "1"]
    assert (oracle._retry_queue, oracle.end_order) == (["2", "3"], ["1", "0"])
    assert dict(oracle._run_times) == {"0": 1, "1": 1}
