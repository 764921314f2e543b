"""TF Serving config protos missing from the ``tensorflow-serving-api`` wheel.

The wheel ships ``tensorflow_serving.config.model_server_config_pb2`` but not
``session_bundle_config_pb2`` (``BatchingParameters``) nor ``monitoring_config_pb2``
(``MonitoringConfig``). This module builds the same messages, with the same full names and field
names, from descriptors at import time so ``google.protobuf.text_format`` parses the files users
write for ``tensorflow_model_server`` (``--batching_parameters_file``, ``--monitoring_config_file``)
unchanged. If the official modules are importable they are used instead.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2

try:  # pragma: no cover - not in the tensorflow-serving-api wheel today
    from tensorflow_serving.servables.tensorflow.session_bundle_config_pb2 import (
        BatchingParameters,
    )
except ImportError:
    BatchingParameters = None
try:  # pragma: no cover
    from tensorflow_serving.config.monitoring_config_pb2 import MonitoringConfig, PrometheusConfig
except ImportError:
    MonitoringConfig = PrometheusConfig = None

_F = descriptor_pb2.FieldDescriptorProto


def _field(msg, name, number, ftype, *, type_name=None, repeated=False):
    field = msg.field.add(name=name, number=number, type=ftype)
    field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name:
        field.type_name = type_name


def _build():
    pool = descriptor_pool.Default()
    # make sure the wrappers are in the pool
    _ = wrappers_pb2.Int64Value
    fdp = descriptor_pb2.FileDescriptorProto(
        name="deepline/tensorflow_serving_extra_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = fdp.message_type.add(name="BatchingParameters")
    int64 = ".google.protobuf.Int64Value"
    _field(batching, "max_batch_size", 1, _F.TYPE_MESSAGE, type_name=int64)
    _field(batching, "batch_timeout_micros", 2, _F.TYPE_MESSAGE, type_name=int64)
    _field(batching, "max_enqueued_batches", 3, _F.TYPE_MESSAGE, type_name=int64)
    _field(batching, "num_batch_threads", 4, _F.TYPE_MESSAGE, type_name=int64)
    _field(batching, "thread_pool_name", 5, _F.TYPE_MESSAGE,
           type_name=".google.protobuf.StringValue")
    _field(batching, "allowed_batch_sizes", 6, _F.TYPE_INT64, repeated=True)
    _field(batching, "pad_variable_length_inputs", 7, _F.TYPE_BOOL)
    _field(batching, "enable_large_batch_splitting", 8, _F.TYPE_MESSAGE,
           type_name=".google.protobuf.BoolValue")
    _field(batching, "max_execution_batch_size", 9, _F.TYPE_MESSAGE, type_name=int64)

    prom = fdp.message_type.add(name="PrometheusConfig")
    _field(prom, "enable", 1, _F.TYPE_BOOL)
    _field(prom, "path", 2, _F.TYPE_STRING)
    mon = fdp.message_type.add(name="MonitoringConfig")
    _field(mon, "prometheus_config", 1, _F.TYPE_MESSAGE,
           type_name=".tensorflow.serving.PrometheusConfig")

    try:
        pool.Add(fdp)
    except TypeError:  # already added (module reloaded)
        pass
    from google.protobuf import message_factory

    def cls(name):
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))

    return (cls("tensorflow.serving.BatchingParameters"),
            cls("tensorflow.serving.MonitoringConfig"),
            cls("tensorflow.serving.PrometheusConfig"))


if BatchingParameters is None or MonitoringConfig is None:
    _b, _m, _p = _build()
    BatchingParameters = BatchingParameters or _b
    MonitoringConfig = MonitoringConfig or _m
    PrometheusConfig = PrometheusConfig or _p

__all__ = ["BatchingParameters", "MonitoringConfig", "PrometheusConfig"]
