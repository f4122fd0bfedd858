"""Keras (TensorFlow CPU) and numpy peers of kiln's CPU-device benchmarks (not run by CI).

Times, in one process, the same work `kiln --device cpu bench --filter training_step` and
`--filter matmul` time:
- the seed model's training step (Embedding(10000, 64) -> BiLSTM(64, sequences) -> BiLSTM(32) ->
  Dense(64, relu) -> Dropout(0.2) -> Dense(1, sigmoid), binary cross-entropy, Adam) at batch 16
  and T = 62 (random ids, as kiln's benchmark);
- the same model with BiGRU layers of the same widths (`kiln train qqp --arch gru`; Keras's GRU
  with reset_after=True, its default), kiln's `qqp_gru_training_step`;
- the LeNet-style step kiln trains on MNIST (conv 32 -> max pool -> conv 64 -> max pool -> dense
  128 -> dropout 0.25 -> dense 10, cross-entropy from logits, Adam) at batch 64;
- a 1024^3 float32 matmul in numpy (OpenBLAS).

Medians of timed `train_on_batch` calls after warm-up; JSON to --json.

    python3 -m venv /tmp/kvenv && /tmp/kvenv/bin/pip install tensorflow-cpu
    /tmp/kvenv/bin/python tools/keras/steps.py --json benches/results/keras-cpu-steps.json
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402
from tensorflow.keras import layers  # noqa: E402


def timed(fn, warmup=3, runs=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def seed_step(batch=16, steps_t=62, vocab=10000, cell=layers.LSTM):
    model = keras.Sequential(
        [
            keras.Input((steps_t,), dtype="int32"),
            layers.Embedding(vocab, 64),
            layers.Bidirectional(cell(64, return_sequences=True)),
            layers.Bidirectional(cell(32)),
            layers.Dense(64, activation="relu"),
            layers.Dropout(0.2),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy")
    rng = np.random.default_rng(17)
    x = rng.integers(0, vocab, (batch, steps_t), dtype=np.int32)
    y = (np.arange(batch) % 2).astype(np.float32).reshape(batch, 1)
    return timed(lambda: model.train_on_batch(x, y))


def lenet_step(batch=64):
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.25),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer="adam",
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(13)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(batch) % 10]
    return timed(lambda: model.train_on_batch(x, y))


def numpy_matmul(n=1024):
    rng = np.random.default_rng(1)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    ms = timed(lambda: a @ b, warmup=2, runs=10)
    return ms, 2 * n**3 / (ms * 1e-3) / 1e9


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--only", choices=["seed", "gru", "lenet", "matmul"], action="append",
                    help="time only these workloads (repeatable; default: all)")
    args = ap.parse_args()
    want = set(args.only or ["seed", "gru", "lenet", "matmul"])
    out = {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "threads": os.cpu_count(),
    }
    if "seed" in want:
        out["seed_step_ms"] = seed_step()
    if "gru" in want:
        out["seed_gru_step_ms"] = seed_step(cell=layers.GRU)
    if "lenet" in want:
        lenet = lenet_step()
        out["lenet_step_ms"] = lenet
        out["lenet_images_per_sec"] = 64 / lenet * 1e3
    if "matmul" in want:
        mm_ms, mm_gflops = numpy_matmul()
        out["numpy_matmul_1024_ms"] = mm_ms
        out["numpy_matmul_1024_gflops"] = mm_gflops
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
