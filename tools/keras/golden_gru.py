"""Golden values from Keras (TensorFlow CPU) for kiln's GRU: forward outputs and gradients.

Writes tests/golden/keras_gru.safetensors: for each case, the inputs, every weight in Keras's
layout (GRU with reset_after=True, Keras's default: kernel (E, 3H), recurrent_kernel (H, 3H),
bias (2, 3H), gates z, r, h), Keras's outputs, and the gradients of loss = sum(y * probe) (probe
a fixed random tensor of y's shape, or for the seed model the binary cross-entropy) with respect
to every weight and, for float inputs, to x. Case settings are in the file's metadata; kiln's test
(tests/keras_golden.rs) reads the file and needs no Python.

    python -m venv .venv && .venv/bin/pip install tensorflow-cpu safetensors numpy
    .venv/bin/python tools/keras/golden_gru.py

Recorded with TensorFlow 2.21.0, Keras 3.15.1 (CPU).
"""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np
import tensorflow as tf
import keras
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "keras_gru.safetensors")
rng = np.random.default_rng(2026)
tensors = {}
cases = {}


def randomize(model, scale=0.5):
    """Random weights everywhere (biases too), so that no gate is at its initial value."""
    for layer in model.layers:
        ws = layer.get_weights()
        layer.set_weights([rng.uniform(-scale, scale, w.shape).astype(np.float32) for w in ws])


def put(case, name, value):
    tensors[f"{case}/{name}"] = np.ascontiguousarray(np.asarray(value, dtype=np.float32))


def weights(case, model):
    names = []
    for layer in model.layers:
        for i, w in enumerate(layer.get_weights()):
            put(case, f"w{len(names)}", w)
            names.append(f"{layer.name}:{i}")
    return names


def probe_gradients(case, model, inputs, float_input):
    """y, and the gradients of sum(y * probe) with respect to every weight (g0, g1, ...) and x."""
    x = tf.convert_to_tensor(inputs)
    with tf.GradientTape() as tape:
        if float_input:
            tape.watch(x)
        y = model(x, training=False)
        probe = rng.uniform(-1, 1, y.shape).astype(np.float32)
        loss = tf.reduce_sum(y * probe)
    put(case, "y", y)
    put(case, "probe", probe)
    sources = list(model.trainable_weights) + ([x] if float_input else [])
    grads = tape.gradient(loss, sources)
    for i, g in enumerate(grads[: len(model.trainable_weights)]):
        put(case, f"g{i}", tf.convert_to_tensor(g))
    if float_input:
        put(case, "dx", grads[-1])


def float_model(t, e, layer):
    x_in = keras.Input((t, e))
    return keras.Model(x_in, layer(x_in))


# 1. One GRU on float inputs, the sequence; one with the last state only; and Bidirectional.
for case, (b, t, e, h, seq, bidir) in {
    "gru_seq": (2, 5, 4, 3, True, False),
    "gru_long": (3, 40, 4, 33, False, False),
    "bigru_seq": (3, 6, 4, 5, True, True),
    "bigru_last": (2, 7, 3, 4, False, True),
}.items():
    gru = keras.layers.GRU(h, return_sequences=seq)
    model = float_model(t, e, keras.layers.Bidirectional(gru) if bidir else gru)
    randomize(model)
    x = rng.uniform(-1, 1, (b, t, e)).astype(np.float32)
    put(case, "x", x)
    cases[case] = {"kind": "float", "bidirectional": bidir, "return_sequences": seq, "batch": b,
                   "steps": t, "input": e, "units": h, "weights": weights(case, model)}
    probe_gradients(case, model, x, True)

# 2. Masking: Embedding(mask_zero=True) -> GRU or Bidirectional(GRU), with and without sequences
# (Keras's GRU repeats the carried h at a masked step; its Bidirectional outputs zeros there).
for case, (bidir, seq) in {
    "masked_gru": (False, False),
    "masked_gru_seq": (False, True),
    "masked_bigru": (True, False),
    "masked_bigru_seq": (True, True),
}.items():
    b, t, v, e, h = 3, 7, 9, 4, 3
    model = keras.Sequential([keras.Input((t,), dtype="int32"), keras.layers.Embedding(v, e, mask_zero=True)])
    gru = keras.layers.GRU(h, return_sequences=seq)
    model.add(keras.layers.Bidirectional(gru) if bidir else gru)
    randomize(model)
    ids = rng.integers(1, v, (b, t)).astype(np.int32)
    ids[0, 5:] = 0
    ids[1, :2] = 0
    ids[2, 3] = 0
    put(case, "ids", ids)
    cases[case] = {"kind": "masked", "bidirectional": bidir, "return_sequences": seq, "batch": b,
                   "steps": t, "vocab": v, "input": e, "units": h, "weights": weights(case, model)}
    probe_gradients(case, model, ids, False)

# 3. The seed's model with BiGRU layers (kiln train qqp --arch gru), vocabulary cut to 300: outputs
# in inference, the loss and every weight's gradient.
case = "gru_seed_model"
b, t, v = 4, 62, 300
model = keras.Sequential([
    keras.Input((t,), dtype="int32"),
    keras.layers.Embedding(v, 64),
    keras.layers.Bidirectional(keras.layers.GRU(64, return_sequences=True)),
    keras.layers.Bidirectional(keras.layers.GRU(32)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dropout(0.2),
    keras.layers.Dense(1, activation="sigmoid"),
])
randomize(model, scale=0.2)
ids = rng.integers(2, v, (b, t)).astype(np.int32)
for r, n in enumerate([9, 14, 31, 20]):
    ids[r, n:31] = 0
    ids[r, 31 + n // 2:] = 0
labels = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
put(case, "ids", ids)
put(case, "labels", labels)
cases[case] = {"kind": "seed_model", "batch": b, "steps": t, "vocab": v, "weights": weights(case, model)}
with tf.GradientTape() as tape:
    p = model(ids, training=False)
    loss = keras.losses.BinaryCrossentropy()(labels, p)
put(case, "y", p)
put(case, "loss", [float(loss)])
for i, g in enumerate(tape.gradient(loss, model.trainable_weights)):
    put(case, f"g{i}", tf.convert_to_tensor(g))

save_file(tensors, OUT, metadata={"cases": json.dumps(cases), "keras": keras.__version__, "tensorflow": tf.__version__})
print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")
