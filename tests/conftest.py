"""Test-session setup shared by every test directory.

TensorFlow can split the one physical CPU into logical devices only before its runtime starts,
so this happens here, at import time: every test sees two logical CPU devices
(`/device:CPU:0`, `/device:CPU:1`), which lets `tf.distribute.MirroredStrategy` tests run on a
machine without GPUs. Single-device code is unaffected (it places ops on CPU:0).
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)
