"""Command line: tensorflow_model_server flag syntax, errors (exit 2), `make serve`'s launcher."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys

import pytest

from serving.launch import choose_server
from serving.server.config import read_monitoring_file
from serving.server.options import FlagError, ServerOptions, parse_flags


def test_defaults_match_tensorflow_model_server():
    o = parse_flags(["--model_base_path=/m/x"])
    assert (o.port, o.rest_api_port, o.model_name) == (8500, 0, "default")
    assert o.file_system_poll_wait_seconds == 1 and o.enable_batching is False
    assert o.rest_api_timeout_in_ms == 30000 and o.bind_address == "127.0.0.1"


def test_flag_syntaxes():
    o = parse_flags(["--port", "9000", "-rest_api_port=9001", "--model_name", "mnist",
                     "--model_base_path=/models/mnist", "--enable_batching",
                     "--noenable_model_warmup",
                     "--allow_version_labels_for_unavailable_models=true",
                     "--file_system_poll_wait_seconds=0"])
    assert (o.port, o.rest_api_port, o.model_name) == (9000, 9001, "mnist")
    assert o.enable_batching and not o.enable_model_warmup
    assert o.allow_version_labels_for_unavailable_models
    assert o.file_system_poll_wait_seconds == 0
    assert not parse_flags(["--model_base_path=/m", "--enable_batching=false"]).enable_batching
    assert parse_flags(["--model_base_path=/m", "--enable_batching=1"]).enable_batching


@pytest.mark.parametrize("argv,fragment", [
    (["--model_base_path=/m", "--bogus_flag=1"], "Unknown command line flag 'bogus_flag'"),
    (["--model_base_path=/m", "--port=abc"], "Illegal value 'abc' specified for int flag 'port'"),
    (["--model_base_path=/m", "--enable_batching=maybe"], "for bool flag 'enable_batching'"),
    (["--model_base_path=/m", "--port"], "Missing value for flag 'port'"),
    (["--model_base_path=/m", "--port=70000"], "--port must be in [0, 65535]"),
    ([], "model_base_path"),
    (["--model_base_path=/m", "--model_config_file=/c"], "mutually exclusive"),
    (["--model_base_path=/m", "stray"], "Unexpected positional argument 'stray'"),
    (["--model_base_path=/m", "--batching_parameters_file=/b"], "requires --enable_batching"),
    (["--model_base_path=/m", "--rest_api_front=uvicorn"],
     "--rest_api_front must be native or asyncio, got 'uvicorn'"),
    (["--model_base_path=/m", "--grpc_front=h2"],
     "--grpc_front must be native or grpcio, got 'h2'"),
])
def test_bad_command_lines(argv, fragment):
    with pytest.raises(FlagError) as info:
        parse_flags(argv)
    assert fragment in str(info.value)


def _run(args, env=None, timeout=60):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_unknown_flag_exits_2_with_clear_message():
    proc = _run(["-m", "serving", "--model_base_path=/m", "--frobnicate=1"])
    assert proc.returncode == 2
    assert "Unknown command line flag 'frobnicate'" in proc.stderr
    assert "--rest_api_port" in proc.stderr  # the usage lists the flags


def test_missing_model_dir_exits_nonzero(tmp_path):
    proc = _run(["-m", "serving", f"--model_config_file={tmp_path / 'absent.config'}"])
    assert proc.returncode == 1
    assert "cannot read --model_config_file" in proc.stderr


def test_launch_uses_tensorflow_model_server_when_on_path(tmp_path):
    fake = tmp_path / "tensorflow_model_server"
    fake.write_text("#!/bin/sh\necho FAKE-TFS \"$@\"\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    assert choose_server(env) == str(fake)
    assert choose_server(dict(env, DEEPLINE_SERVER="embedded")) is None
    proc = _run(["-m", "serving.launch", "--model_name=m", "--model_base_path=/x"], env=env)
    assert proc.returncode == 0
    assert "using TensorFlow Serving" in proc.stdout
    assert "FAKE-TFS --model_name=m --model_base_path=/x" in proc.stdout


def test_launch_falls_back_to_embedded_server(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))
    assert choose_server(env) is None
    proc = _run(["-m", "serving.launch", "--model_name=m", "--model_base_path=/x",
                 "--not_a_flag"], env=env)
    assert "embedded deepline server" in proc.stdout
    assert proc.returncode == 2 and "Unknown command line flag 'not_a_flag'" in proc.stderr


def test_monitoring_config(tmp_path):
    path = tmp_path / "monitoring.config"
    path.write_text("prometheus_config { enable: true }")
    m = read_monitoring_file(str(path))
    assert m.prometheus_enabled and m.prometheus_path == "/monitoring/prometheus/metrics"
    path.write_text('prometheus_config { enable: true path: "/metrics" }')
    assert read_monitoring_file(str(path)).prometheus_path == "/metrics"
    assert not read_monitoring_file(None).prometheus_enabled


def test_options_dataclass_is_complete():
    # every documented flag has a default of the right type
    o = ServerOptions()
    assert isinstance(o.rest_api_max_body_bytes, int) and o.rest_api_max_body_bytes > 0
    assert o.grpc_threads == o.rest_threads == max(8, 4 * (os.cpu_count() or 1))
    assert ServerOptions(grpc_max_threads=3, rest_api_num_threads=5).rest_threads == 5


def _make_serve_flags(*make_args: str) -> list[str]:
    """The flags `make serve` passes to serving.launch (from `make -n`, nothing started)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    proc = subprocess.run(["make", "-n", "-s", "serve", *make_args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60, check=True)
    script = proc.stdout.replace("\\\n", " ")
    line = next(ln for ln in script.splitlines() if "serving.launch" in ln)
    words = shlex.split(line)
    return words[words.index("serving.launch") + 1:]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_serves_grpc_on_8500_and_rest_on_8501():
    o = parse_flags(_make_serve_flags())
    assert (o.port, o.rest_api_port, o.model_name) == (8500, 8501, "lenet5")
    assert o.model_base_path.endswith(os.path.join("models", "lenet5"))
    o = parse_flags(_make_serve_flags("GRPC_PORT=9000", "REST_PORT=0", "MODEL_NAME=mnist"))
    assert (o.port, o.rest_api_port, o.model_name) == (9000, 0, "mnist")
    assert o.model_base_path.endswith(os.path.join("models", "mnist"))
    # flags in ARGS come last, so they win, as with tensorflow_model_server
    o = parse_flags(_make_serve_flags("ARGS=--rest_api_port=9001 --enable_batching"))
    assert (o.rest_api_port, o.enable_batching) == (9001, True)


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_serve_with_a_model_config_file_passes_no_base_path():
    o = parse_flags(_make_serve_flags("ARGS=--model_config_file=/m/models.config"))
    assert (o.model_config_file, o.model_base_path) == ("/m/models.config", "")
    assert o.rest_api_port == 8501
