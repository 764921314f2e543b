"""deepline-tune as real processes: kill -9 and resume; one chief and two workers on localhost.

Each search trains LeNet-5 trials of 1 epoch × 2 steps; every process is bounded by a timeout
and killed (its whole process group) in ``finally``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.ports import free_port

TIMEOUT_S = 240


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from pipelines import data

    path = tmp_path_factory.mktemp("tfds")
    data.load("mnist5k", data_dir=path)
    return path


def tune_cmd(data_dir, workdir, run, max_trials) -> list[str]:
    sets = ["epochs=1", "batch_size=32", "max_train_examples=64", "validation_steps=1",
            "augment=false", "verbose=0", "lr_schedule=constant", f"data_dir={data_dir}"]
    return [sys.executable, "-m", "pipelines.tuning", "lenet5", "--tuner", "random",
            "--max-trials", str(max_trials), "--run", run, "--workdir", str(workdir),
            *[a for s in sets for a in ("--set", s)]]


def base_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", KERAS_BACKEND="tensorflow", PYTHONUNBUFFERED="1",
               CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def start(cmd, log: pathlib.Path, env) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)


def kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)


def completed_trials(tune_dir: pathlib.Path) -> set[str]:
    done = set()
    for path in tune_dir.glob("trial_*/trial.json"):
        try:
            trial = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # being written
        if trial.get("status") == "COMPLETED":
            done.add(trial["trial_id"])
    return done


def test_kill_9_then_rerun_does_not_rerun_completed_trials(data_dir, tmp_path):
    cmd = tune_cmd(data_dir, tmp_path, "resume", 3)
    tune_dir = tmp_path / "runs" / "lenet5" / "tune-resume"
    first = start(cmd, tmp_path / "first.log", base_env())
    try:
        deadline = time.monotonic() + TIMEOUT_S
        done: set[str] = set()
        while time.monotonic() < deadline and first.poll() is None:
            done = completed_trials(tune_dir)
            if done:
                break
            time.sleep(0.05)
    finally:
        kill_group(first)
    log = (tmp_path / "first.log").read_text()
    assert first.returncode == -signal.SIGKILL, log
    assert done and len(done) < 3, f"killed after {sorted(done)} completed\n{log}"
    before = {tid: ((tune_dir / f"trial_{tid}" / "trial.json").read_text(),
                    (tune_dir / "runs" / "lenet5" / f"trial_{tid}" / "metrics.json")
                    .stat().st_mtime_ns) for tid in done}

    second = subprocess.run(cmd, capture_output=True, text=True, env=base_env(),
                            timeout=TIMEOUT_S)
    assert second.returncode == 0, second.stdout + second.stderr
    out = second.stdout
    assert "Reloading Tuner" in out
    for tid in done:  # completed trials were neither rerun nor rewritten
        assert f"trial {tid} starts" not in out
        after = ((tune_dir / f"trial_{tid}" / "trial.json").read_text(),
                 (tune_dir / "runs" / "lenet5" / f"trial_{tid}" / "metrics.json")
                 .stat().st_mtime_ns)
        assert after == before[tid]
    started_again = {tid for tid in ("0", "1", "2") if f"trial {tid} starts" in out}
    assert started_again == {"0", "1", "2"} - done
    rows = json.loads((tune_dir / "results.json").read_text())["trials"]
    assert [r["trial_id"] for r in rows] == ["0", "1", "2"]
    assert {r["status"] for r in rows} == {"COMPLETED"}


def test_chief_and_two_workers_on_localhost(data_dir, tmp_path):
    cmd = tune_cmd(data_dir, tmp_path, "dist", 4)
    tune_dir = tmp_path / "runs" / "lenet5" / "tune-dist"
    net = {"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(free_port())}
    procs = {}
    try:
        procs["chief"] = start(cmd, tmp_path / "chief.log",
                               base_env(KERASTUNER_TUNER_ID="chief", **net))
        for worker in ("tuner0", "tuner1"):
            procs[worker] = start(cmd, tmp_path / f"{worker}.log",
                                  base_env(KERASTUNER_TUNER_ID=worker, **net))
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs.values():
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        for proc in procs.values():
            kill_group(proc)
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in procs}
    for name, proc in procs.items():
        assert proc.returncode == 0, f"{name}:\n{logs[name]}"
    assert "oracle listening on 127.0.0.1" in logs["chief"]
    assert "starts" not in logs["chief"]  # the chief only serves the oracle
    ran = {}
    for worker in ("tuner0", "tuner1"):
        ran[worker] = set(re.findall(rf"^\[deepline-tune\] {worker}: trial (\S+) done:",
                                     logs[worker], flags=re.M))
        assert ran[worker], f"{worker} completed no trial:\n{logs[worker]}"
        assert "no trials left; worker done" in logs[worker]
    assert not ran["tuner0"] & ran["tuner1"]
    # The chief's oracle recorded every trial the workers ran, and wrote the results.
    rows = json.loads((tune_dir / "results.json").read_text())["trials"]
    assert {r["trial_id"] for r in rows} == ran["tuner0"] | ran["tuner1"] == {"0", "1", "2", "3"}
    assert {r["status"] for r in rows} == {"COMPLETED"}
    for row in rows:
        assert row["tuner_id"] in ("tuner0", "tuner1") and row["trial_id"] in ran[row["tuner_id"]]
    assert (tune_dir / "best.yaml").is_file()
    assert "| trial |" in logs["chief"]
