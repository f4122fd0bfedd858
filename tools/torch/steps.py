"""PyTorch peers of kiln's GPU benchmarks, for benches/gpu/run.sh (not run by CI).

Times, in one process on one device (CUDA when present, else CPU):
- the seed model's training step (Embedding(10000, 64) -> BiLSTM(64, sequences) -> BiLSTM(32) ->
  Dense(64, relu) -> Dropout(0.2) -> Dense(1, sigmoid), binary cross-entropy, Adam) at batch 16
  and T = 62, with cuDNN's LSTM;
- the LeNet-style step kiln trains on MNIST (conv 32 -> max pool -> conv 64 -> max pool -> dense
  128 -> dropout -> dense 10, cross-entropy from logits, Adam) at batch 64;
- a 4096^3 FP32 matmul (TF32 off, so it is the same arithmetic kiln does);
- attention as kiln benchmarks it (B 1, 4 heads of 64, T = 128 to 2048, FP32): PyTorch's
  `scaled_dot_product_attention` with its default kernel choice and with the math backend
  (the unfused composition), forward and forward + backward of sum(out * w).

Medians of timed runs after warm-up, with the device synchronised around each; JSON to --json.

    python3 tools/torch/steps.py --json out/torch.json

On a CPU-only machine, as benches/results/cpu-vs-torch/run.sh runs it: the seed model's step at
batches 16 and 256, LeNet's, FP32 matmuls at 1024^3 and 2048^3, the same products in numpy, and
which BLAS kernel each side ran (threadpoolctl):

    python3 tools/torch/steps.py --seed-batches 16,256 --matmul 1024,2048 --numpy \
        --no-attention --json out/torch-cpu.json
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def timed(fn, device, warmup=3, runs=20):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class Seed(nn.Module):
    def __init__(self, vocab=10000):
        super().__init__()
        self.emb = nn.Embedding(vocab, 64)
        self.l1 = nn.LSTM(64, 64, batch_first=True, bidirectional=True)
        self.l2 = nn.LSTM(128, 32, batch_first=True, bidirectional=True)
        self.d1 = nn.Linear(64, 64)
        self.drop = nn.Dropout(0.2)
        self.d2 = nn.Linear(64, 1)

    def forward(self, x):
        h, _ = self.l1(self.emb(x))
        _, (hn, _) = self.l2(h)
        h = torch.cat([hn[0], hn[1]], dim=1)
        return torch.sigmoid(self.d2(self.drop(torch.relu(self.d1(h)))))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Dropout(0.25),
            nn.Linear(128, 10),
        )

    def forward(self, x):
        return self.net(x)


def step_fn(model, loss_fn, x, y):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    return step


def attention_records(t, device):
    """SDPA at (1, 4, t, 64): the default backend choice and the math one, forward and training."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    import torch.nn.functional as F

    q, k, v, w = (torch.rand(1, 4, t, 64, device=device, requires_grad=i < 3) for i in range(4))
    out = []
    for variant, backends in [("sdpa", None), ("math", [SDPBackend.MATH])]:
        def forward():
            with torch.no_grad():
                if backends is None:
                    return F.scaled_dot_product_attention(q, k, v)
                with sdpa_kernel(backends):
                    return F.scaled_dot_product_attention(q, k, v)

        def training():
            if backends is None:
                o = F.scaled_dot_product_attention(q, k, v)
            else:
                with sdpa_kernel(backends):
                    o = F.scaled_dot_product_attention(q, k, v)
            (o * w).sum().backward()

        for kernel, fn in [("attention_forward", forward), ("attention_training", training)]:
            ms = timed(fn, device, runs=10)
            out.append({"kernel": kernel, "variant": variant, "shape": f"B1 T{t} H4x64",
                        "median_ms": ms})
    return out


def blas_info(with_numpy):
    """The BLAS libraries loaded in this process and the kernel each runs (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    if with_numpy:
        import numpy  # noqa: F401  (loads numpy's OpenBLAS, so threadpoolctl lists it)
    return [{k: v for k, v in lib.items() if k in
             ("internal_api", "version", "architecture", "num_threads", "filepath")}
            for lib in threadpool_info()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--seed-batches", default="16",
                    help="comma-separated batch sizes ('' for none)")
    ap.add_argument("--matmul", default="4096", help="comma-separated square sizes ('' for none)")
    ap.add_argument("--no-lenet", action="store_true")
    ap.add_argument("--numpy", action="store_true", help="time numpy's matmul at the same sizes")
    ap.add_argument("--no-attention", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(2019)
    records = []

    for batch in [int(b) for b in args.seed_batches.split(",") if b]:
        seed = Seed().to(device).train()
        x = torch.randint(0, 10000, (batch, 62), device=device)
        y = (torch.arange(batch, device=device) % 2).float().unsqueeze(1)
        ms = timed(step_fn(seed, nn.BCELoss(), x, y), device, runs=20 if batch <= 64 else 10)
        records.append({"kernel": "qqp_training_step", "shape": f"B{batch} T62 H64/32",
                        "median_ms": ms, "samples_per_sec": batch / ms * 1e3})

    if not args.no_lenet:
        lenet = LeNet().to(device).train()
        x = torch.rand(64, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (64,), device=device)
        ms = timed(step_fn(lenet, nn.CrossEntropyLoss(), x, y), device)
        records.append({"kernel": "lenet_training_step", "shape": "batch 64", "median_ms": ms,
                        "samples_per_sec": 64 / ms * 1e3})

    for n in [int(n) for n in args.matmul.split(",") if n]:
        a = torch.rand(n, n, device=device)
        b = torch.rand(n, n, device=device)
        ms = timed(lambda: a @ b, device, runs=10)
        records.append({"kernel": "matmul", "variant": "torch", "shape": f"{n}x{n}x{n}",
                        "median_ms": ms, "gflops": 2 * n ** 3 / ms / 1e6})
        if args.numpy:
            import numpy as np
            an, bn = a.cpu().numpy(), b.cpu().numpy()
            ms = timed(lambda: an @ bn, torch.device("cpu"), runs=10)
            records.append({"kernel": "matmul", "variant": "numpy", "shape": f"{n}x{n}x{n}",
                            "median_ms": ms, "gflops": 2 * n ** 3 / ms / 1e6})

    if not args.no_attention:
        for t in [128, 512, 1024, 2048]:
            records.extend(attention_records(t, device))

    info = {"torch": torch.__version__, "device": str(device),
            "name": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "threads": torch.get_num_threads(),
            "parallel_info": torch.__config__.parallel_info(),
            "blas": blas_info(args.numpy)}
    with open(args.json, "w") as f:
        json.dump({"info": info, "records": records}, f, indent=1)
    for r in records:
        print(r)


if __name__ == "__main__":
    main()
