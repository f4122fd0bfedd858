"""Golden values from Keras (TensorFlow CPU) for kiln's layers beyond the seed's model.

Writes tests/golden/keras_layers.safetensors: for each case the input, the layer's weights in
Keras's order, a random cotangent r, Keras's output y, and the gradients of sum(y * r) with
respect to the input and every weight. Case settings are in the file's metadata. kiln's test
(tests/keras_golden.rs) reads the file; it needs no Python.

    python -m venv .venv && .venv/bin/pip install tensorflow-cpu safetensors numpy
    .venv/bin/python tools/keras/golden_layers.py

Recorded with the versions printed into the file's metadata (`versions`).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np
import tensorflow as tf
import keras
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "keras_layers.safetensors")
rng = np.random.default_rng(2026)
tensors = {}
cases = {}


def put(case, name, value):
    tensors[f"{case}/{name}"] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def record(case, layer, x, settings):
    """Runs `layer` on x, with random weights, and stores y and the gradients of sum(y * r)."""
    layer.build(x.shape)
    ws = [rng.uniform(-1.5, 1.5, w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(ws)
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv)
        r = rng.uniform(-1, 1, y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * r)
    grads = tape.gradient(loss, [xv] + layer.trainable_weights)
    put(case, "x", x)
    put(case, "r", r)
    put(case, "y", y)
    put(case, "dx", grads[0])
    for i, (w, g) in enumerate(zip(ws, grads[1:])):
        put(case, f"w{i}", w)
        put(case, f"dw{i}", g)
    cases[case] = dict(settings, weights=[w.name for w in layer.weights])


# LayerNormalization over the last axis: Keras's epsilon, and a larger one on rows whose variance
# is small next to it (so that epsilon matters); without scale and offset.
x = rng.uniform(-2, 2, (2, 3, 5)).astype(np.float32)
record("layer_norm", keras.layers.LayerNormalization(), x, {"epsilon": 1e-3, "center": True, "scale": True})
x = (rng.uniform(-0.05, 0.05, (4, 6)) + rng.uniform(-1, 1, (4, 1))).astype(np.float32)
record("layer_norm_eps", keras.layers.LayerNormalization(epsilon=0.01), x, {"epsilon": 0.01, "center": True, "scale": True})
x = rng.uniform(-3, 3, (3, 7)).astype(np.float32)
record("layer_norm_plain", keras.layers.LayerNormalization(center=False, scale=False), x,
       {"epsilon": 1e-3, "center": False, "scale": False})

# Reshape: the same values in order, one dimension inferred (-1); its gradient is the cotangent
# reshaped back.
x = rng.uniform(-2, 2, (2, 3, 4)).astype(np.float32)
record("reshape", keras.layers.Reshape((-1, 3)), x, {"target_shape": [-1, 3]})

# MultiHeadAttention: self-attention (query = value = key, one tensor), with padding masks from
# ids (a padded query, a row whose keys are all padded) and a causal mask, and cross-attention
# with a value mask and another output width. Stores the query x, the value v (cross), ids, and
# the gradients with respect to x (and v), and the eight weights in Keras's order.
def record_mha(case, layer, q, v, qids, vids, causal, settings):
    layer.build(q.shape, (q if v is None else v).shape)
    ws = [rng.uniform(-0.8, 0.8, w.shape).astype(np.float32) for w in layer.get_weights()]
    layer.set_weights(ws)
    qv = tf.Variable(q)
    vv = qv if v is None else tf.Variable(v)
    qmask = None if qids is None else tf.constant(qids != 0)
    vmask = None if vids is None else tf.constant(vids != 0)
    with tf.GradientTape() as tape:
        # Keras 3 reads the query's mask off the tensor (an Embedding's mask_zero puts it there)
        # and ignores a query_mask argument.
        qt = tf.identity(qv)
        if qmask is not None:
            keras.src.backend.set_keras_mask(qt, qmask)
        y = layer(qt, qt if v is None else vv, value_mask=vmask, use_causal_mask=causal)
        r = rng.uniform(-1, 1, y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * r)
    sources = [qv] + ([] if v is None else [vv]) + layer.trainable_weights
    grads = tape.gradient(loss, sources)
    put(case, "x", q)
    put(case, "r", r)
    put(case, "y", y)
    put(case, "dx", grads[0])
    if v is not None:
        put(case, "v", v)
        put(case, "dv", grads[1])
    if qids is not None:
        put(case, "qids", qids)
    if vids is not None:
        put(case, "vids", vids)
    for i, (w, g) in enumerate(zip(ws, grads[len(sources) - len(ws):])):
        put(case, f"w{i}", w)
        put(case, f"dw{i}", g)
    cases[case] = dict(settings, causal=causal, weights=[w.name for w in layer.weights])


x = rng.uniform(-1, 1, (2, 5, 6)).astype(np.float32)
record_mha("mha_self", keras.layers.MultiHeadAttention(2, 4, value_dim=3), x, None, None, None, False,
           {"num_heads": 2, "key_dim": 4, "value_dim": 3})
x = rng.uniform(-1, 1, (3, 6, 6)).astype(np.float32)
ids = np.array([[3, 1, 4, 1, 0, 0], [0, 2, 7, 0, 1, 5], [0, 0, 0, 0, 0, 0]], dtype=np.float32)
record_mha("mha_masked", keras.layers.MultiHeadAttention(2, 4), x, None, ids, ids, False,
           {"num_heads": 2, "key_dim": 4, "value_dim": 4})
record_mha("mha_causal", keras.layers.MultiHeadAttention(3, 2, value_dim=4), x, None, ids, ids, True,
           {"num_heads": 3, "key_dim": 2, "value_dim": 4})
q = rng.uniform(-1, 1, (2, 4, 6)).astype(np.float32)
v = rng.uniform(-1, 1, (2, 7, 5)).astype(np.float32)
vids = np.array([[1, 1, 1, 0, 1, 0, 0], [2, 0, 0, 0, 0, 0, 3]], dtype=np.float32)
record_mha("mha_cross", keras.layers.MultiHeadAttention(2, 4, output_shape=3), q, v, None, vids, False,
           {"num_heads": 2, "key_dim": 4, "value_dim": 4, "output_shape": 3})

# keras-hub (when installed): TransformerEncoder post-norm and pre-norm (no mask), and x plus
# PositionEmbedding / SinePositionEncoding (kiln's layers add the positions to their input).
try:
    import keras_hub
except ImportError:
    keras_hub = None
if keras_hub is not None:
    x = rng.uniform(-1, 1, (2, 5, 6)).astype(np.float32)
    record("encoder_post", keras_hub.layers.TransformerEncoder(8, 2), x,
           {"intermediate_dim": 8, "num_heads": 2, "normalize_first": False})
    x = rng.uniform(-1, 1, (2, 4, 6)).astype(np.float32)
    record("encoder_pre", keras_hub.layers.TransformerEncoder(7, 3, activation="tanh", normalize_first=True), x,
           {"intermediate_dim": 7, "num_heads": 3, "normalize_first": True, "activation": "tanh"})

    class Plus(keras.layers.Layer):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def build(self, shape):
            self.inner.build(shape)

        def call(self, x):
            return x + self.inner(x)

    x = rng.uniform(-1, 1, (2, 5, 4)).astype(np.float32)
    record("position_embedding", Plus(keras_hub.layers.PositionEmbedding(sequence_length=7)), x,
           {"sequence_length": 7})
    x = rng.uniform(-1, 1, (2, 6, 8)).astype(np.float32)
    record("sine_position", Plus(keras_hub.layers.SinePositionEncoding()), x, {"max_wavelength": 10000.0})

# Conv1D over (T, C): valid padding with strides 3 (Keras refuses strides with dilation); same
# padding with strides 2
# (an odd total, the extra zero after); causal padding with dilation 2 and relu; then
# GlobalMaxPooling1D. Weights in Keras's order: kernel (k, C, filters), bias.
x = rng.uniform(-1, 1, (2, 11, 3)).astype(np.float32)
record("conv1d_valid", keras.layers.Conv1D(4, 3, strides=3), x,
       {"filters": 4, "kernel_size": 3, "strides": 3, "padding": "valid", "dilation_rate": 1, "activation": "linear"})
x = rng.uniform(-1, 1, (2, 8, 3)).astype(np.float32)
record("conv1d_same", keras.layers.Conv1D(5, 4, strides=2, padding="same"), x,
       {"filters": 5, "kernel_size": 4, "strides": 2, "padding": "same", "dilation_rate": 1, "activation": "linear"})
x = rng.uniform(-1, 1, (3, 6, 2)).astype(np.float32)
record("conv1d_causal", keras.layers.Conv1D(3, 2, padding="causal", dilation_rate=2, activation="relu"), x,
       {"filters": 3, "kernel_size": 2, "strides": 1, "padding": "causal", "dilation_rate": 2, "activation": "relu"})
x = rng.uniform(-1, 1, (2, 5, 4)).astype(np.float32)
record("global_max_pooling1d", keras.layers.GlobalMaxPooling1D(), x, {})
# gelu, exact and tanh-approximated, as activation layers.
x = rng.uniform(-4, 4, (3, 7)).astype(np.float32)
record("gelu", keras.layers.Activation("gelu"), x, {"activation": "gelu"})
record("gelu_approximate", keras.layers.Activation(lambda t: keras.activations.gelu(t, approximate=True)), x,
       {"activation": "gelu_approximate"})

# BatchNormalization: training (batch statistics, gradients of x, gamma and beta, and the moving
# statistics after the one update) on (B, F) with axis -1 and on (B, C, H, W) with axis 1
# (kiln's convolution layout); inference (the moving statistics) on (B, F). Weights in Keras's
# order: gamma, beta, moving_mean, moving_variance (the last two positive variances).
def record_bn(case, layer, x, training, settings):
    layer.build(x.shape)
    ws = [rng.uniform(-1.5, 1.5, layer.gamma.shape).astype(np.float32),
          rng.uniform(-1.5, 1.5, layer.beta.shape).astype(np.float32),
          rng.uniform(-1, 1, layer.moving_mean.shape).astype(np.float32),
          rng.uniform(0.5, 2, layer.moving_variance.shape).astype(np.float32)]
    layer.set_weights(ws)
    xv = tf.Variable(x)
    with tf.GradientTape() as tape:
        y = layer(xv, training=training)
        r = rng.uniform(-1, 1, y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * r)
    grads = tape.gradient(loss, [xv, layer.gamma, layer.beta])
    put(case, "x", x)
    put(case, "r", r)
    put(case, "y", y)
    put(case, "dx", grads[0])
    for i, w in enumerate(ws):
        put(case, f"w{i}", w)
    put(case, "dw0", grads[1])
    put(case, "dw1", grads[2])
    put(case, "moving_mean_after", layer.moving_mean.numpy())
    put(case, "moving_variance_after", layer.moving_variance.numpy())
    cases[case] = dict(settings, training=training, weights=[w.name for w in layer.weights])


x = rng.uniform(-2, 2, (6, 5)).astype(np.float32)
record_bn("batch_norm_train", keras.layers.BatchNormalization(), x, True,
          {"axis": -1, "momentum": 0.99, "epsilon": 1e-3})
x = rng.uniform(-2, 2, (3, 4, 3, 3)).astype(np.float32)
record_bn("batch_norm_nchw", keras.layers.BatchNormalization(axis=1, momentum=0.9, epsilon=1e-2), x, True,
          {"axis": 1, "momentum": 0.9, "epsilon": 1e-2})
x = rng.uniform(-2, 2, (4, 5)).astype(np.float32)
record_bn("batch_norm_infer", keras.layers.BatchNormalization(), x, False,
          {"axis": -1, "momentum": 0.99, "epsilon": 1e-3})

meta = {
    "cases": json.dumps(cases),
    "versions": json.dumps({"tensorflow": tf.__version__, "keras": keras.__version__,
                            "keras_hub": getattr(keras_hub, "__version__", None)}),
}
save_file(tensors, OUT, metadata=meta)
print(f"wrote {OUT}: {len(cases)} cases, {len(tensors)} tensors, TF {tf.__version__}, Keras {keras.__version__}")
