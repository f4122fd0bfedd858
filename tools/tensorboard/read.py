"""Reads kiln's TensorBoard event files with TensorBoard's own reader and prints every scalar:
the check that TensorBoard opens what `kiln train --tensorboard DIR` writes.

    python -m venv .venv && .venv/bin/pip install tensorboard
    .venv/bin/python tools/tensorboard/read.py DIR

Checked with tensorboard 2.21.0 on a `kiln --device cpu train qqp --limit 200 --epochs 3
--tensorboard DIR` run: train/ holds epoch_loss, epoch_accuracy and epoch_learning_rate,
validation/ epoch_loss and epoch_accuracy, at steps 1 to 3, equal to history.csv.
"""

import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

for part in ["train", "validation"]:
    acc = EventAccumulator(f"{sys.argv[1]}/{part}")
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        print(part, tag, [(e.step, e.value) for e in acc.Scalars(tag)])
