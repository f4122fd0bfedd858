// Embedding lookup and its backward; one-hot rows (a lookup into the identity, without one).
//
// Dimension letters: N (number of ids, e.g. B*T), E (embedding width), V (vocabulary).
// table (V, E), ids (N), out (N, E). An id >= V reads nothing and yields zeros; the host refuses
// such ids with a typed error before launch, the guard only keeps the GPU inside the buffer.
// Backward is deterministic without atomics, in two passes: `embedding_links` finds, for each
// position, the next position holding the same id (O(N^2) over u32 ids only); then in
// `embedding_backward` the thread for (i, e) owns row ids[i] when i is that id's first occurrence
// and walks the chain, summing dout in index order.

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
// links[i] = next position after i with the same id (N when none); links[N + i] = 1 when i is
// the first occurrence of its id, else 0.
@group(0) @binding(6) var<storage, read_write> links: array<u32>;        // (2 * N)
@group(0) @binding(7) var<storage, read> links_in: array<u32>;           // (2 * N)

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

// out (N, V): row i is 1 at column ids[i] and 0 elsewhere (all zeros for an id >= V). dim = V.
@compute @workgroup_size(256)
fn one_hot(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let idx = flat_index(wid, nwg, lid);
    if (idx >= p.n * p.dim) {
        return;
    }
    out[idx] = select(0.0, 1.0, ids[idx / p.dim] == idx % p.dim);
}

@compute @workgroup_size(256)
fn embedding_links(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let i = flat_index(wid, nwg, lid);
    if (i >= p.n) {
        return;
    }
    let id = ids[i];
    var first = 1u;
    for (var j = 0u; j < i; j = j + 1u) {
        if (ids[j] == id) {
            first = 0u;
            break;
        }
    }
    var next = p.n;
    for (var j = i + 1u; j < p.n; j = j + 1u) {
        if (ids[j] == id) {
            next = j;
            break;
        }
    }
    links[i] = next;
    links[p.n + i] = first;
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
    if (id >= p.vocab || links_in[p.n + i] == 0u) {
        return;
    }
    var acc = 0.0;
    for (var j = i; j < p.n; j = links_in[j]) {
        acc = acc + dout[j * p.dim + e];
    }
    dtable[id * p.dim + e] = dtable[id * p.dim + e] + acc;
}
