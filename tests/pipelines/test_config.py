"""Config resolution: defaults → YAML → --set, typed parsing, validation, one-line errors."""

import dataclasses
import subprocess
import sys
from typing import Literal

import pytest
import yaml

from pipelines.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    option,
    parse_value,
    resolve_config,
    save_config,
)


@dataclasses.dataclass(frozen=True)
class ToyConfig(TrainConfig):
    pipeline: str = "toy"
    dataset: Literal["a", "b"] = "a"
    ks: tuple[int, ...] = (10, 25)
    rate: float = option(0.5, "a rate", min=0.0, max=1.0)
    name: str | None = None


def test_defaults_and_frozen():
    cfg = ToyConfig()
    assert cfg.epochs == 10 and cfg.batch_size == 128 and cfg.run == "default"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.epochs = 3


def test_typed_overrides():
    cfg = resolve_config(ToyConfig, overrides=[
        "epochs=3", "learning_rate=1e-2", "jit_compile=yes", "steps_per_epoch=none",
        "ks=4, 5,6", "dataset=b", "rate=1", "name=x=y", "export=off",
    ])
    assert cfg.epochs == 3 and isinstance(cfg.epochs, int)
    assert cfg.learning_rate == pytest.approx(0.01)
    assert cfg.jit_compile is True and cfg.export is False
    assert cfg.steps_per_epoch is None
    assert cfg.ks == (4, 5, 6)
    assert cfg.dataset == "b"
    assert cfg.rate == 1.0 and isinstance(cfg.rate, float)
    assert cfg.name == "x=y"  # only the first '=' separates key and value
    assert apply_overrides(cfg, ["steps_per_epoch=7"]).steps_per_epoch == 7


@pytest.mark.parametrize("text,expected", [("1", True), ("False", False), ("on", True),
                                           ("no", False)])
def test_parse_bool(text, expected):
    assert parse_value("flag", bool, text) is expected


def test_yaml_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\nks: [1, 2]\nlearning_rate: 1\nrun: mine\n")
    cfg = resolve_config(ToyConfig, yaml_path=f, overrides=["epochs=9"])
    assert (cfg.epochs, cfg.ks, cfg.learning_rate, cfg.run) == (9, (1, 2), 1.0, "mine")


def test_save_load_round_trip(tmp_path):
    cfg = resolve_config(ToyConfig, overrides=["ks=3", "name=n", "steps_per_epoch=4"])
    path = save_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(path.read_text())["ks"] == [3]
    assert load_config(ToyConfig, path) == cfg
    assert config_to_dict(cfg)["steps_per_epoch"] == 4


@pytest.mark.parametrize("override,fragment", [
    ("bogus=1", "unknown config key 'bogus'"),
    ("epochs=three", "bad value for config key 'epochs': 'three'"),
    ("epochs=0", "'epochs' must be >= 1, received 0"),
    ("rate=2", "'rate' must be <= 1.0"),
    ("dataset=c", "valid choices: a, b"),
    ("mixed_precision=maybe", "valid choices: auto, on, off"),
    ("jit_compile=perhaps", "'jit_compile'"),
    ("ks=1,x", "'ks'"),
    ("run=a/b", "plain directory name"),
    ("noequals", "expected key=value"),
])
def test_bad_values_are_one_line(override, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_config(ToyConfig, overrides=[override])
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError, match="valid keys: pipeline, dataset, run, epochs"):
        resolve_config(ToyConfig, overrides=["epoch=3"])


def test_yaml_errors(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_config(ToyConfig, yaml_path=f)
    f.write_text("nope: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'nope'"):
        resolve_config(ToyConfig, yaml_path=f)
    with pytest.raises(ConfigError, match="cannot read config file"):
        resolve_config(ToyConfig, yaml_path=tmp_path / "missing.yaml")


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "pipelines", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


@pytest.mark.parametrize("args,fragment", [
    (["nosuch"], "unknown pipeline 'nosuch'; valid pipelines: lenet5, ksparse, elman"),
    (["lenet5", "--set", "bogus=1"], "unknown config key 'bogus' for pipeline 'lenet5'"),
    # ksparse's module imports TensorFlow: its native import noise must not precede the error.
    (["ksparse", "--set", "bogus=1"], "unknown config key 'bogus' for pipeline 'ksparse'"),
    (["lenet5", "--set", "pooling=median"], "valid choices: max, average, l2"),
    (["lenet5", "--set", "epochs=-1"], "'epochs' must be >= 1"),
    (["lenet5", "--sweep", "epochs=1,x"], "bad value for config key 'epochs': 'x'"),
])
def test_cli_errors_exit_2_with_one_line(args, fragment, tmp_path):
    proc = _cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


def test_cli_show_config(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 4\npooling: l2\n")
    proc = _cli("lenet5", "--config", str(f), "--set", "batch_size=32", "--run", "r1",
                "--show-config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = yaml.safe_load(proc.stdout)
    assert (shown["epochs"], shown["pooling"], shown["batch_size"], shown["run"]) == (
        4, "l2", 32, "r1")


def test_tune_main_without_tuning_package_is_clear(monkeypatch, capsys):
    import builtins

    from pipelines import cli

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("pipelines.tuning"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(SystemExit) as info:
        cli.tune_main(["lenet5"])
    assert info.value.code == 2
    assert "pipelines.tuning" in capsys.readouterr().err
