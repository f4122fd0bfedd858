"""Golden values from Keras (TensorFlow CPU) for kiln's LSTM, Bidirectional and the seed's model.

Writes tests/golden/keras_lstm.safetensors: for each case, the inputs, every weight in Keras's
layout, and Keras's outputs (and, for the seed model, the binary cross-entropy loss and its
gradient with respect to every weight). Case settings are in the file's metadata. kiln's test
(tests/keras_golden.rs) reads the file; it needs no Python.

    python -m venv .venv && .venv/bin/pip install tensorflow-cpu safetensors numpy
    .venv/bin/python tools/keras/golden.py

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

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "keras_lstm.safetensors")
rng = np.random.default_rng(2019)
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
            name = f"w{len(names)}"
            put(case, name, w)
            names.append(f"{layer.name}:{i}")
    return names


# 1. One LSTM on float inputs: the sequence and both states.
for case, (b, t, e, h) in {"lstm": (2, 4, 5, 3), "lstm_long": (3, 40, 4, 33)}.items():
    x_in = keras.Input((t, e))
    y, hs, cs = keras.layers.LSTM(h, return_sequences=True, return_state=True)(x_in)
    model = keras.Model(x_in, [y, hs, cs])
    randomize(model)
    x = rng.uniform(-1, 1, (b, t, e)).astype(np.float32)
    y, hs, cs = model(x)
    put(case, "x", x)
    cases[case] = {"kind": "lstm", "batch": b, "steps": t, "input": e, "units": h, "weights": weights(case, model)}
    put(case, "y", y)
    put(case, "h", hs)
    put(case, "c", cs)

# 2. Bidirectional, with and without sequences.
for case, seq in {"bilstm_seq": True, "bilstm_last": False}.items():
    b, t, e, h = 3, 6, 4, 5
    x_in = keras.Input((t, e))
    out = keras.layers.Bidirectional(keras.layers.LSTM(h, return_sequences=seq))(x_in)
    model = keras.Model(x_in, out)
    randomize(model)
    x = rng.uniform(-1, 1, (b, t, e)).astype(np.float32)
    put(case, "x", x)
    cases[case] = {"kind": "bidirectional", "batch": b, "steps": t, "input": e, "units": h,
                   "return_sequences": seq, "weights": weights(case, model)}
    put(case, "y", model(x))

# 3. Masking: Embedding(mask_zero=True) -> LSTM, last state (a masked step carries the state).
for case, bidir in {"masked_lstm": False, "masked_bilstm": True}.items():
    b, t, v, e, h = 3, 7, 9, 4, 3
    model = keras.Sequential([keras.Input((t,), dtype="int32"), keras.layers.Embedding(v, e, mask_zero=True)])
    lstm = keras.layers.LSTM(h)
    model.add(keras.layers.Bidirectional(lstm) if bidir else lstm)
    randomize(model)
    ids = rng.integers(1, v, (b, t)).astype(np.int32)
    ids[0, 5:] = 0      # trailing padding
    ids[1, :2] = 0      # leading padding
    ids[2, 3] = 0       # a gap
    put(case, "ids", ids)
    cases[case] = {"kind": "masked", "bidirectional": bidir, "batch": b, "steps": t, "vocab": v,
                   "input": e, "units": h, "weights": weights(case, model)}
    put(case, "y", model(ids))

# 4. The seed's model at full width (vocabulary cut to 300 to keep the file small), on ids with
# padding; outputs in inference, then the loss and every weight's gradient.
case = "seed_model"
b, t, v = 4, 62, 300
model = keras.Sequential([
    keras.Input((t,), dtype="int32"),
    keras.layers.Embedding(v, 64),
    keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True)),
    keras.layers.Bidirectional(keras.layers.LSTM(32)),
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

# 5. Masked sequences: Keras's LSTM repeats the carried h at a masked step; its Bidirectional
# outputs zeros there (zero_output_for_mask).
for case, bidir in {"masked_lstm_seq": False, "masked_bilstm_seq": True}.items():
    b, t, v, e, h = 3, 7, 9, 4, 3
    model = keras.Sequential([keras.Input((t,), dtype="int32"), keras.layers.Embedding(v, e, mask_zero=True)])
    lstm = keras.layers.LSTM(h, return_sequences=True)
    model.add(keras.layers.Bidirectional(lstm) if bidir else lstm)
    randomize(model)
    ids = rng.integers(1, v, (b, t)).astype(np.int32)
    ids[0, 5:] = 0
    ids[1, :2] = 0
    ids[2, 3] = 0
    put(case, "ids", ids)
    cases[case] = {"kind": "masked", "bidirectional": bidir, "return_sequences": True, "batch": b,
                   "steps": t, "vocab": v, "input": e, "units": h, "weights": weights(case, model)}
    put(case, "y", model(ids))

save_file(tensors, OUT, metadata={"cases": json.dumps(cases), "keras": keras.__version__, "tensorflow": tf.__version__})
print(f"wrote {OUT}: {len(tensors)} tensors, {os.path.getsize(OUT)} bytes")
