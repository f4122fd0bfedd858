"""The seed tutorial's Keras model trained on exactly kiln's inputs, for the accuracy comparison.

    target/release/kiln export qqp --out /tmp/qqp.json     # kiln's split and encoding
    .venv/bin/python tools/keras/train_qqp.py /tmp/qqp.json benches/results/qqp-keras [SEED]

Same split (sklearn's train_test_split, random_state 2019), vocabulary (fitted on the training
split) and ids as `kiln train qqp`; the model, loss, optimizer, batch (16), shuffle buffer
(10,000) and epochs (10) are the seed's. Validation accuracy is measured after every epoch, as
kiln does. Writes OUT_DIR/history-seed<SEED>.json (and prints one line per epoch); the seed
(default 2019) sets Keras's initialization, shuffling and dropout.
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import numpy as np
import tensorflow as tf
import keras

src, out_dir = sys.argv[1], sys.argv[2]
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 2019
with open(src) as f:
    data = json.load(f)
train_x = np.array(data["train"]["ids"], dtype=np.int32)
train_y = np.array(data["train"]["labels"], dtype=np.float32)
val_x = np.array(data["val"]["ids"], dtype=np.int32)
val_y = np.array(data["val"]["labels"], dtype=np.float32)
keras.utils.set_random_seed(seed)

VOCAB_SIZE = data["vocab_size"]
train_dataset = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(10000).batch(16)
val_dataset = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(16)

model = keras.Sequential([
    keras.Input((train_x.shape[1],), dtype="int32"),
    keras.layers.Embedding(VOCAB_SIZE, 64),
    keras.layers.Bidirectional(keras.layers.LSTM(64, return_sequences=True)),
    keras.layers.Bidirectional(keras.layers.LSTM(32)),
    keras.layers.Dense(64, activation="relu"),
    keras.layers.Dropout(rate=0.2),
    keras.layers.Dense(1, activation="sigmoid"),
])
model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])


class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.time() - self.start


history = model.fit(train_dataset, epochs=10, validation_data=val_dataset, verbose=2, callbacks=[Timer()])
os.makedirs(out_dir, exist_ok=True)
epochs = [
    {"epoch": i + 1, **{k: float(v[i]) for k, v in history.history.items()}}
    for i in range(len(history.history["loss"]))
]
best = max(epochs, key=lambda e: e["val_accuracy"])
result = {
    "framework": f"TensorFlow {tf.__version__}, Keras {keras.__version__} (CPU)",
    "seed": seed,
    "train_pairs": int(len(train_x)),
    "val_pairs": int(len(val_x)),
    "vocab_size": VOCAB_SIZE,
    "epochs": epochs,
    "best_val_accuracy": best["val_accuracy"],
    "best_epoch": best["epoch"],
}
with open(os.path.join(out_dir, f"history-seed{seed}.json"), "w") as f:
    json.dump(result, f, indent=1)
print(f"best val_accuracy {best['val_accuracy']:.4f} at epoch {best['epoch']}")
