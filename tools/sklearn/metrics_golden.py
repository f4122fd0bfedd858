"""scikit-learn's precision, recall and ROC AUC on fixed predictions: kiln's tracked metrics
(`--metrics precision,recall,auc`) are checked against them by tests/metrics_sklearn.rs, which
needs no Python. Writes tests/golden/sklearn_metrics.json.

    python -m venv .venv && .venv/bin/pip install scikit-learn numpy
    .venv/bin/python tools/sklearn/metrics_golden.py

Recorded with scikit-learn 1.9.1, numpy 2.4.6.
"""

import json
import os

import numpy as np
import sklearn
from sklearn.metrics import precision_score, recall_score, roc_auc_score

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden", "sklearn_metrics.json")
rng = np.random.default_rng(7)
cases = []
for name, n, skew in [("balanced", 1000, 0.0), ("rare_positives", 997, -1.5), ("weak", 600, None)]:
    labels = (rng.random(n) < (0.5 if skew == 0.0 else 0.15)).astype(np.float32)
    if skew is None:
        scores = rng.random(n)  # no signal: AUC near 0.5
    else:
        logits = rng.normal(1.2 * (2 * labels - 1), 1.0)
        scores = 1 / (1 + np.exp(-logits))
    scores = scores.astype(np.float32)
    # Exact values: on the threshold, at the ends, and ties.
    scores[:10] = [0.5, 0.5, 0.0, 1.0, 0.25, 0.25, 0.75, 0.75, 0.5, 1.0]
    pred = (scores > 0.5).astype(np.float32)
    cases.append({
        "name": name,
        "scores": [float(v) for v in scores],
        "labels": [float(v) for v in labels],
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "auc": float(roc_auc_score(labels, scores)),
    })
with open(OUT, "w") as f:
    json.dump({"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": cases}, f)
    f.write("\n")
print(f"wrote {OUT}: " + ", ".join(f"{c['name']} p {c['precision']:.4f} r {c['recall']:.4f} auc {c['auc']:.4f}" for c in cases))
