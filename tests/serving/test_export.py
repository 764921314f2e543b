"""export_model: version layout, named signatures, classify/regress, warm-up, atomicity, errors."""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from serving import export as export_mod
from serving.examples import make_examples
from serving.export import export_model
from serving.warmup import read_warmup

CLASS_NAMES = ["zero", "one", "two"]


def tiny_classifier(seed=0):
    """Raw 28x28x1 pixels (0-255) → Rescaling → Dense softmax over 3 classes."""
    keras.utils.set_random_seed(seed)
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 255)(image)
    x = keras.layers.Flatten()(x)
    probabilities = keras.layers.Dense(3, activation="softmax")(x)
    return keras.Model(image, probabilities)


def raw_images(n, seed=1):
    return np.random.RandomState(seed).randint(0, 256, (n, 28, 28, 1)).astype("float32")


def signature_defs(version_dir):
    """The MetaGraphDef's SignatureDefs as stored on disk (what saved_model_cli shows)."""
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    return proto.meta_graphs[0].signature_def


def serialized(batch):
    return tf.constant([e.SerializeToString() for e in make_examples(batch)])


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    model = tiny_classifier()
    path = export_model(model, base, "lenet", task="classification", class_names=CLASS_NAMES)
    return model, path, tf.saved_model.load(str(path))


def test_version_dir_layout_and_warmup_records(classifier_export):
    _, path, _ = classifier_export
    assert path.name == "1" and path.parent.name == "lenet"
    assert (path / "saved_model.pb").is_file()
    assert (path / "variables" / "variables.index").is_file()
    logs = read_warmup(path / "assets.extra" / "tf_serving_warmup_requests")
    assert len(logs) == 1
    request = logs[0].predict_log.request
    assert request.model_spec.name == "lenet"
    assert request.model_spec.signature_name == "serving_default"
    assert list(request.inputs) == ["image"]
    warm = tf.make_ndarray(request.inputs["image"])
    assert warm.shape == (1, 28, 28, 1) and warm.dtype == np.float32 and not warm.any()
    # No temporary directory left next to the version.
    assert sorted(p.name for p in path.parent.iterdir()) == ["1"]


def test_serving_default_has_named_inputs_and_outputs(classifier_export):
    _, path, loaded = classifier_export
    fn = loaded.signatures["serving_default"]
    args, kwargs = fn.structured_input_signature
    assert args == () and list(kwargs) == ["image"]
    assert kwargs["image"].shape.as_list() == [None, 28, 28, 1]
    assert kwargs["image"].dtype == tf.float32
    outputs = fn.structured_outputs
    assert sorted(outputs) == ["classes", "probabilities"]
    assert outputs["probabilities"].shape.as_list() == [None, 3]
    assert outputs["probabilities"].dtype == tf.float32
    assert outputs["classes"].shape.as_list() == [None] and outputs["classes"].dtype == tf.int64
    defs = signature_defs(path)
    assert defs["serving_default"].method_name == "tensorflow/serving/predict"
    assert list(defs["serving_default"].inputs) == ["image"]
    assert not any(k.startswith(("args_", "output_")) for k in defs["serving_default"].outputs)


def test_serving_default_matches_model_predict_on_raw_pixels(classifier_export):
    model, _, loaded = classifier_export
    images = raw_images(4)
    expected = model.predict(images, verbose=0)
    out = loaded.signatures["serving_default"](image=tf.constant(images))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["classes"].numpy(), expected.argmax(-1))


def test_classify_signature_on_tf_examples(classifier_export):
    model, path, loaded = classifier_export
    defs = signature_defs(path)
    assert defs["classify"].method_name == "tensorflow/serving/classify"
    assert list(defs["classify"].inputs) == ["inputs"]
    assert sorted(defs["classify"].outputs) == ["classes", "scores"]

    images = raw_images(3, seed=5)
    # Build the protos by hand: the documented layout is one float_list "image" of 784 values.
    protos = []
    for img in images:
        ex = tf.train.Example()
        ex.features.feature["image"].float_list.value.extend(img.ravel().tolist())
        protos.append(ex.SerializeToString())
    out = loaded.signatures["classify"](inputs=tf.constant(protos))
    assert out["classes"].dtype == tf.string and out["scores"].dtype == tf.float32
    assert out["classes"].numpy().tolist() == [[c.encode() for c in CLASS_NAMES]] * 3
    np.testing.assert_allclose(
        out["scores"].numpy(), model.predict(images, verbose=0), rtol=1e-5, atol=1e-6
    )


def test_signatures_pass_tensorflows_serving_validation(classifier_export, tmp_path):
    # The checks TF applies to Classify/Regress/Predict SignatureDefs (one string `inputs`;
    # `classes` DT_STRING and/or `scores` DT_FLOAT; regress `outputs` DT_FLOAT).
    is_valid = tf.compat.v1.saved_model.signature_def_utils.is_valid_signature
    defs = signature_defs(classifier_export[1])
    assert is_valid(defs["serving_default"]) and is_valid(defs["classify"])
    keras.utils.set_random_seed(0)
    x = keras.Input((2,), name="x")
    path = export_model(keras.Model(x, keras.layers.Dense(1)(x)), tmp_path, "r", task="regression")
    assert is_valid(signature_defs(path)["regress"])


def test_classify_rejects_a_missing_feature(classifier_export):
    _, _, loaded = classifier_export
    empty = tf.train.Example().SerializeToString()
    with pytest.raises(tf.errors.InvalidArgumentError, match="image"):
        loaded.signatures["classify"](inputs=tf.constant([empty]))


def test_saved_model_loads_without_project_code(tmp_path):
    @keras.saving.register_keras_serializable(package="test_export")
    class Square(keras.layers.Layer):
        def call(self, x):
            return keras.ops.square(x)

    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="features")
    model = keras.Model(x, keras.layers.Dense(2)(Square()(x)))
    path = export_model(model, tmp_path, "sq", output_names="scores")
    data = np.array([[1.0, -2.0, 3.0]], dtype="float32")
    expected = model.predict(data, verbose=0)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(path)!r})\n"
        "out = m.signatures['serving_default'](features=tf.constant([[1.0, -2.0, 3.0]]))\n"
        "np.save(sys.argv[1], out['scores'].numpy())\n"
    )
    result_file = tmp_path / "out.npy"
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH="")
    subprocess.run(
        [sys.executable, "-I", "-c", code, str(result_file)], check=True, env=env, cwd=tmp_path,
        timeout=120,
    )
    np.testing.assert_allclose(np.load(result_file), expected, rtol=1e-5)


def test_classify_default_labels_and_sigmoid_classifier(tmp_path):
    keras.utils.set_random_seed(3)
    x = keras.Input((2,), name="x")
    model = keras.Model(x, keras.layers.Dense(1, activation="sigmoid")(x))
    path = export_model(model, tmp_path, "binary", task="classification")
    loaded = tf.saved_model.load(str(path))
    data = np.array([[1.0, 2.0], [-3.0, 0.5], [0.0, 0.0]], dtype="float32")
    p = model.predict(data, verbose=0)
    out = loaded.signatures["classify"](inputs=serialized({"x": data}))
    assert out["classes"].numpy().tolist() == [[b"0", b"1"]] * 3
    np.testing.assert_allclose(out["scores"].numpy(), np.hstack([1 - p, p]), rtol=1e-5, atol=1e-6)
    default = loaded.signatures["serving_default"](x=tf.constant(data))
    np.testing.assert_array_equal(default["classes"].numpy(), (p[:, 0] > 0.5).astype(int))


def test_regress_signature(tmp_path):
    keras.utils.set_random_seed(4)
    x = keras.Input((4,), name="features")
    model = keras.Model(x, keras.layers.Dense(1)(x))
    path = export_model(model, tmp_path, "reg", task="regression")
    defs = signature_defs(path)
    assert defs["regress"].method_name == "tensorflow/serving/regress"
    assert list(defs["regress"].inputs) == ["inputs"] and list(defs["regress"].outputs) == [
        "outputs"
    ]
    assert "classify" not in defs
    loaded = tf.saved_model.load(str(path))
    data = np.arange(12, dtype="float32").reshape(3, 4)
    expected = model.predict(data, verbose=0)[:, 0]
    out = loaded.signatures["regress"](inputs=serialized({"features": data}))
    assert out["outputs"].shape == (3,)
    np.testing.assert_allclose(out["outputs"].numpy(), expected, rtol=1e-5)
    default = loaded.signatures["serving_default"](features=tf.constant(data))
    assert list(default) == ["outputs"]
    np.testing.assert_allclose(default["outputs"].numpy()[:, 0], expected, rtol=1e-5)


def test_string_input_model(tmp_path):
    keras.utils.set_random_seed(5)
    vectorize = keras.layers.TextVectorization(
        split="character", output_mode="int", output_sequence_length=6, standardize=None
    )
    vectorize.adapt(["abc", "bcd", "xyz"])
    text = keras.Input((), dtype="string", name="text")
    h = keras.layers.Embedding(10, 4)(vectorize(text))
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(text, keras.layers.Dense(2, activation="softmax")(h))
    path = export_model(
        model, tmp_path, "chars", task="classification", class_names=["neg", "pos"],
        warmup_inputs={"text": ["abc", "zz"]},
    )
    request = read_warmup(path / "assets.extra" / "tf_serving_warmup_requests")[0]
    assert tf.make_ndarray(request.predict_log.request.inputs["text"]).tolist() == [b"abc", b"zz"]
    loaded = tf.saved_model.load(str(path))
    spec = loaded.signatures["serving_default"].structured_input_signature[1]["text"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    texts = np.array(["abc", "xyzx", "b"])
    expected = model.predict(tf.constant(texts), verbose=0)
    out = loaded.signatures["serving_default"](text=tf.constant(texts))
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, rtol=1e-5, atol=1e-6)
    ex = loaded.signatures["classify"](inputs=serialized({"text": texts}))
    np.testing.assert_allclose(ex["scores"].numpy(), expected, rtol=1e-5, atol=1e-6)


def test_several_inputs_dict_and_list_outputs(tmp_path):
    a = keras.Input((2,), name="a")
    b = keras.Input((2,), name="b")
    dict_model = keras.Model(
        {"a": a, "b": b},
        {"total": keras.layers.Add()([a, b]), "diff": keras.layers.Subtract()([a, b])},
    )
    list_model = keras.Model([a, b], [keras.layers.Add()([a, b]), keras.layers.Multiply()([a, b])])
    xa = np.array([[1.0, 2.0]], dtype="float32")
    xb = np.array([[10.0, 20.0]], dtype="float32")

    path = export_model(dict_model, tmp_path, "dict")
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    assert sorted(fn.structured_input_signature[1]) == ["a", "b"]
    out = fn(a=tf.constant(xa), b=tf.constant(xb))
    assert sorted(out) == ["diff", "total"]
    np.testing.assert_allclose(out["total"].numpy(), [[11.0, 22.0]])
    np.testing.assert_allclose(out["diff"].numpy(), [[-9.0, -18.0]])

    path = export_model(list_model, tmp_path, "list", output_names=["sum", "product"])
    out = tf.saved_model.load(str(path)).signatures["serving_default"](
        a=tf.constant(xa), b=tf.constant(xb)
    )
    np.testing.assert_allclose(out["sum"].numpy(), [[11.0, 22.0]])
    np.testing.assert_allclose(out["product"].numpy(), [[10.0, 40.0]])


def test_custom_warmup_batches(tmp_path):
    images = [raw_images(2, seed=7), raw_images(1, seed=8)]
    path = export_model(
        tiny_classifier(), tmp_path, "m", warmup_inputs=[{"image": images[0]}, {"image": images[1]}]
    )
    logs = read_warmup(path / "assets.extra" / "tf_serving_warmup_requests")
    assert len(logs) == 2
    for log, expected in zip(logs, images, strict=True):
        np.testing.assert_array_equal(tf.make_ndarray(log.predict_log.request.inputs["image"]),
                                      expected)


def test_version_auto_increment_and_no_overwrite(tmp_path):
    model = tiny_classifier()
    assert export_model(model, tmp_path, "m").name == "1"
    assert export_model(model, tmp_path, "m").name == "2"
    (tmp_path / "m" / "notes").mkdir()  # non-integer entries are not versions
    assert export_model(model, tmp_path, "m", version=7).name == "7"
    assert export_model(model, tmp_path, "m").name == "8"

    before = (tmp_path / "m" / "7" / "saved_model.pb").read_bytes()
    with pytest.raises(FileExistsError, match=str(tmp_path / "m" / "7")):
        export_model(tiny_classifier(seed=9), tmp_path, "m", version=7, task="classification")
    assert (tmp_path / "m" / "7" / "saved_model.pb").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "2", "7", "8", "notes"]


def test_failure_mid_export_leaves_no_partial_version(tmp_path, monkeypatch):
    import serving.warmup

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(serving.warmup, "write_warmup", boom)
    with pytest.raises(OSError, match="disk full"):
        export_model(tiny_classifier(), tmp_path, "m", task="classification")
    assert list((tmp_path / "m").iterdir()) == []

    def publish_fails(tmp_dir, final_dir):
        assert tmp_dir.parent == final_dir.parent and (tmp_dir / "saved_model.pb").is_file()
        raise KeyboardInterrupt

    monkeypatch.undo()
    monkeypatch.setattr(export_mod, "_publish", publish_fails)
    with pytest.raises(KeyboardInterrupt):
        export_model(tiny_classifier(), tmp_path, "m")
    assert list((tmp_path / "m").iterdir()) == []


class _Subclassed(keras.Model):
    def call(self, x):
        return x


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"model_name": "../x"}, "model_name='../x'"),
        ({"model_name": ""}, "model_name=''"),
        ({"model_name": "a/b"}, "model_name='a/b'"),
        ({"model_name": ".hidden"}, "model_name='.hidden'"),
        ({"task": "segmentation"}, "task='segmentation'"),
        ({"version": -1}, "version=-1"),
        ({"version": "2"}, "version='2'"),
        ({"version": True}, "version=True"),
        ({"class_names": ["a", "b"]}, "class_names"),
        ({"task": "classification", "class_names": ["a", "b"]}, "class_names has 2 entries"),
        ({"task": "classification", "class_names": "abc"}, "class_names"),
        ({"task": "regression"}, "task='regression' needs an output of shape"),
        ({"output_names": ["p", "q"]}, "output_names"),
        ({"task": "classification", "output_names": "classes"}, "output_names"),
        ({"warmup_inputs": {"pixels": np.zeros((1, 28, 28, 1))}}, "warmup_inputs keys"),
        ({"warmup_inputs": {"image": np.zeros((28, 28, 1))}}, "warmup_inputs"),
        ({"warmup_inputs": [{"image": np.zeros((1, 28, 28, 1))}] * 1001}, "1 to 1000 batches"),
    ],
)
def test_bad_arguments_raise_value_error(tmp_path, kwargs, match):
    kwargs = {"model_name": "m", **kwargs}
    with pytest.raises(ValueError, match=re.escape(match)):
        export_model(tiny_classifier(), tmp_path, **kwargs)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_model_without_symbolic_inputs_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="keras.Input"):
        export_model(_Subclassed(), tmp_path, "m")
    x = keras.Input((2,), name="bad name")
    with pytest.raises(ValueError, match="received input name 'bad name'"):
        export_model(keras.Model(x, keras.layers.Dense(1)(x)), tmp_path, "m")
