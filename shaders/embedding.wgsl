// Embedding lookup and its backward.
//
// Dimension letters: N (number of ids, e.g. B*T), E (embedding width), V (vocabulary).
// table (V, E), ids (N), out (N, E). An id >= V reads nothing and yields zeros; the host refuses
// such ids with a typed error before launch, the guard only keeps the GPU inside the buffer.
// Backward is deterministic without atomics: the thread for (i, e) owns row ids[i] only when i is
// the first occurrence of that id, and sums dout over every occurrence in index order.

struct EmbeddingParams {
    n: u32,
    dim: u32,
    vocab: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: EmbeddingParams;
@group(0) @binding(1) var<storage, read> table: array<f32>;     // (V, E)
@group(0) @binding(2) var<storage, read> ids: array<u32>;       // (N)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // (N, E)
@group(0) @binding(4) var<storage, read> dout: array<f32>;      // (N, E)
@group(0) @binding(5) var<storage, read_write> dtable: array<f32>; // (V, E), accumulated (+=)

@compute @workgroup_size(256)
fn embedding_forward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    if (idx >= p.n * p.dim) {
        return;
    }
    let i = idx / p.dim;
    let e = idx % p.dim;
    let id = ids[i];
    var v = 0.0;
    if (id < p.vocab) {
        v = table[id * p.dim + e];
    }
    out[idx] = v;
}

@compute @workgroup_size(256)
fn embedding_backward(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    if (idx >= p.n * p.dim) {
        return;
    }
    let i = idx / p.dim;
    let e = idx % p.dim;
    let id = ids[i];
    if (id >= p.vocab) {
        return;
    }
    for (var j = 0u; j < i; j = j + 1u) {
        if (ids[j] == id) {
            return;
        }
    }
    var acc = 0.0;
    for (var j = i; j < p.n; j = j + 1u) {
        if (ids[j] == id) {
            acc = acc + dout[j * p.dim + e];
        }
    }
    dtable[id * p.dim + e] = dtable[id * p.dim + e] + acc;
}
