// Losses: per-sample values forward, gradients backward (scaled by `scale`, e.g. 1/N for a mean).
//
// Binary cross-entropy from probabilities, as Keras computes it (EPS = 1e-7):
//   q = clamp(p, EPS, 1 - EPS);  l = -(y * log(q + EPS) + (1 - y) * log(1 - q + EPS))
//   the clamp passes no gradient outside [EPS, 1 - EPS], as tf.clip_by_value does.
// Binary cross-entropy from logits:  l = max(x, 0) - x * y + log(1 + exp(-|x|)),  dl/dx = sigmoid(x) - y.
// Categorical cross-entropy from probabilities, as Keras computes it: q = p / sum(p), clamped to
//   [EPS, 1 - EPS]; l = -sum_j y_j log(q_j);  dl/dp_k = (sum of y_j over unclamped j) / sum(p)
//   - y_k / p_k where q_k is unclamped (the clamp passes no gradient).
// Categorical cross-entropy from logits, rows of length C with target distributions y:
//   l = sum_j y_j * (logsumexp(x) - x_j),  dl/dx_j = softmax(x)_j * sum(y) - y_j.
// Regression, per element, e = p - y: squared error e^2 (dl/dp = 2e); absolute error |e|
//   (dl/dp = sign(e), 0 at 0); Huber e^2/2 for |e| <= delta, delta (|e| - delta/2) beyond
//   (dl/dp = clamp(e, -delta, delta)), as Keras.

struct LossParams {
    n: u32,      // elements (binary) or rows (categorical)
    classes: u32,
    scale: f32,
    delta: f32,  // Huber's threshold
}

const EPS: f32 = 1e-7;

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> pred: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(256)
fn bce_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let q = clamp(pred[i], EPS, 1.0 - EPS);
    let y = labels[i];
    out[i] = -(y * log(q + EPS) + (1.0 - y) * log(1.0 - q + EPS));
}

@compute @workgroup_size(256)
fn bce_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let x = pred[i];
    let y = labels[i];
    var d = 0.0;
    if (x >= EPS && x <= 1.0 - EPS) {
        d = -(y / (x + EPS) - (1.0 - y) / (1.0 - x + EPS));
    }
    out[i] = d * p.scale;
}

@compute @workgroup_size(256)
fn bce_logits_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let x = pred[i];
    out[i] = max(x, 0.0) - x * labels[i] + log(1.0 + exp(-abs(x)));
}

@compute @workgroup_size(256)
fn bce_logits_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = (sigmoid(pred[i]) - labels[i]) * p.scale;
}

// One thread per row: rows are short (class counts), and a row's work stays in one thread.
fn row_stats(base: u32) -> vec2<f32> {
    var m = F32_LOWEST;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        m = max(m, pred[base + j]);
    }
    var s = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        s = s + exp(pred[base + j] - m);
    }
    return vec2<f32>(m, log(s));
}

@compute @workgroup_size(256)
fn cce_logits_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    let st = row_stats(base);
    // log_sum - (x_j - max), never max + log_sum - x_j: adding the max first rounds the small
    // log-sum away when the logits are large.
    var l = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        l = l + labels[base + j] * (st.y - (pred[base + j] - st.x));
    }
    out[row] = l;
}

@compute @workgroup_size(256)
fn cce_logits_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    let st = row_stats(base);
    var total = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        total = total + labels[base + j];
    }
    for (var j = 0u; j < p.classes; j = j + 1u) {
        let s = exp(pred[base + j] - st.x - st.y);
        out[base + j] = (s * total - labels[base + j]) * p.scale;
    }
}

fn row_sum(base: u32) -> f32 {
    var total = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        total = total + pred[base + j];
    }
    return total;
}

fn unclamped(q: f32) -> bool {
    return q >= EPS && q <= 1.0 - EPS;
}

@compute @workgroup_size(256)
fn cce_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    let total = row_sum(base);
    var l = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        l = l - labels[base + j] * log(clamp(pred[base + j] / total, EPS, 1.0 - EPS));
    }
    out[row] = l;
}

@compute @workgroup_size(256)
fn cce_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    let total = row_sum(base);
    var y_in = 0.0;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        if (unclamped(pred[base + j] / total)) {
            y_in = y_in + labels[base + j];
        }
    }
    for (var k = 0u; k < p.classes; k = k + 1u) {
        var g = y_in / total;
        if (unclamped(pred[base + k] / total)) {
            g = g - labels[base + k] / pred[base + k];
        }
        out[base + k] = g * p.scale;
    }
}

// Metrics, per sample: 1 where the prediction is right, else 0. Binary: (pred > threshold) ==
// (label > 0.5), threshold in `scale` (Keras's binary_accuracy). Categorical: argmax(pred) ==
// argmax(labels), first maximum on ties.
@compute @workgroup_size(256)
fn binary_correct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = select(0.0, 1.0, (pred[i] > p.scale) == (labels[i] > 0.5));
}

// Top-k (Keras's top_k_categorical_accuracy, k in `scale`): 1 where fewer than k predictions of
// the row exceed the prediction at the label's class (argmax of the label row, first on ties);
// classes tied with it count as in the top k, as tf.math.in_top_k.
@compute @workgroup_size(256)
fn top_k_correct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    var bl = 0u;
    for (var j = 1u; j < p.classes; j = j + 1u) {
        if (labels[base + j] > labels[base + bl]) {
            bl = j;
        }
    }
    let at_label = pred[base + bl];
    var above = 0u;
    for (var j = 0u; j < p.classes; j = j + 1u) {
        if (pred[base + j] > at_label) {
            above = above + 1u;
        }
    }
    out[row] = select(0.0, 1.0, f32(above) < p.scale);
}

// Counts over all n elements, probabilities against labels 0/1 (label > 0.5 is positive): out[0]
// true positives (pred > threshold, in `scale`, and positive), out[1] predicted positives,
// out[2] actual positives. One thread per count, each over every element: deterministic, and
// a batch's outputs are few.
@compute @workgroup_size(256)
fn binary_counts(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let c = flat_index(wid, nwg, lid);
    if (c >= 3u) {
        return;
    }
    var count = 0u;
    for (var i = 0u; i < p.n; i = i + 1u) {
        let predicted = pred[i] > p.scale;
        let actual = labels[i] > 0.5;
        let hit = select(select(actual, predicted, c == 1u), predicted && actual, c == 0u);
        count = count + select(0u, 1u, hit);
    }
    out[c] = f32(count);
}

// A fixed-bin histogram of the scores (probabilities, clamped to [0, 1]) by class, for ROC AUC:
// out[b] counts negatives (label <= 0.5) in bin b, out[bins + b] positives; bin b holds
// [b / bins, (b + 1) / bins), the last one 1 too. bins in `classes`. One thread per cell.
@compute @workgroup_size(256)
fn score_histogram(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let cell = flat_index(wid, nwg, lid);
    let bins = p.classes;
    if (cell >= 2u * bins) {
        return;
    }
    let positive = cell >= bins;
    let bin = cell % bins;
    var count = 0u;
    for (var i = 0u; i < p.n; i = i + 1u) {
        let b = min(u32(clamp(pred[i], 0.0, 1.0) * f32(bins)), bins - 1u);
        count = count + select(0u, 1u, b == bin && (labels[i] > 0.5) == positive);
    }
    out[cell] = f32(count);
}

@compute @workgroup_size(256)
fn categorical_correct(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let row = flat_index(wid, nwg, lid);
    if (row >= p.n) {
        return;
    }
    let base = row * p.classes;
    var bp = 0u;
    var bl = 0u;
    for (var j = 1u; j < p.classes; j = j + 1u) {
        if (pred[base + j] > pred[base + bp]) {
            bp = j;
        }
        if (labels[base + j] > labels[base + bl]) {
            bl = j;
        }
    }
    out[row] = select(0.0, 1.0, bp == bl);
}

@compute @workgroup_size(256)
fn mse_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let e = pred[i] - labels[i];
    out[i] = e * e;
}

@compute @workgroup_size(256)
fn mse_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = 2.0 * (pred[i] - labels[i]) * p.scale;
}

@compute @workgroup_size(256)
fn mae_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = abs(pred[i] - labels[i]);
}

@compute @workgroup_size(256)
fn mae_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = sign(pred[i] - labels[i]) * p.scale;
}

@compute @workgroup_size(256)
fn huber_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let a = abs(pred[i] - labels[i]);
    if (a <= p.delta) {
        out[i] = 0.5 * a * a;
    } else {
        out[i] = p.delta * (a - 0.5 * p.delta);
    }
}

@compute @workgroup_size(256)
fn huber_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    out[i] = clamp(pred[i] - labels[i], -p.delta, p.delta) * p.scale;
}
