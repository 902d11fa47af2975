#!/usr/bin/env python3
"""The PyTorch peer of kernels/bench/bench_kernels: one MoE expert layer with torch._grouped_mm.

For each shape (Mixtral, Qwen3-30B-A3B, DeepSeek-V3) and token count: bf16 weights (gate and up fused
as [E, 2I, H], down [E, H, I]), bf16 activations, routing from random router logits (softmax, top-k,
renormalised); the timed layer sorts the (token, expert) pairs by expert, gathers the tokens, runs two
grouped GEMMs (gate|up, then down) with SiLU(gate)*up between, scales by the routing weight and
index_adds into an f32 output. Timing: CUDA events around each eager call, 4 input sets in rotation,
warm-up, median. Prints the same table as bench_kernels (ms, TFLOP/s, GB/s of expert weights touched,
floor = max(bytes / 4.3e12, flops / 790e12), ratio, err of one row against a float64 reference).

usage: python3 tools/torch_grouped_mm_peer.py [--shapes mixtral,qwen3,deepseek]
           [--tokens 1,16,128,1024,4096,16384] [--min-ms 300] [--csv FILE]
"""
import argparse
import csv
import statistics
import sys

import torch

BANDWIDTH = 4.3e12  # bytes/s, measured device-to-device copy on an H200
MATRIX_RATE = 790e12  # bf16 FLOP/s, measured 8192^3 product on an H200
INPUT_SETS = 4
SHAPES = {  # hidden, intermediate, experts, top-k
    "mixtral": (4096, 14336, 8, 2),
    "qwen3": (2048, 768, 128, 8),
    "deepseek": (7168, 2048, 256, 8),
}


def route(tokens, experts, top_k, gen):
    logits = torch.randn(tokens, experts, device="cuda", generator=gen)
    weights, ids = logits.softmax(-1).topk(top_k, dim=-1)
    return ids, weights / weights.sum(-1, keepdim=True)


def moe_layer(x, ids, weights, w_gate_up, w_down):
    """x [T, H] bf16, ids/weights [T, k] -> out [T, H] f32."""
    num_experts = w_gate_up.shape[0]
    top_k = ids.shape[1]
    flat = ids.reshape(-1)
    order = torch.argsort(flat, stable=True)
    token_of = order // top_k
    counts = torch.zeros(num_experts, dtype=torch.int32, device=x.device)
    counts.scatter_add_(0, flat, torch.ones_like(flat, dtype=torch.int32))
    offs = torch.cumsum(counts, 0, dtype=torch.int32)
    gate_up = torch._grouped_mm(x[token_of], w_gate_up.transpose(-2, -1), offs=offs)
    gate, up = gate_up.chunk(2, dim=-1)
    h = torch.nn.functional.silu(gate) * up
    y = torch._grouped_mm(h, w_down.transpose(-2, -1), offs=offs)
    y = y.float() * weights.reshape(-1)[order].unsqueeze(-1)
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    out.index_add_(0, token_of, y)
    return out


def reference_row(x, ids, weights, w_gate_up, w_down, token):
    inter = w_down.shape[2]
    xr = x[token].double()
    out = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for e, w in zip(ids[token].tolist(), weights[token].tolist()):
        gu = w_gate_up[e].double() @ xr
        h = torch.nn.functional.silu(gu[:inter]) * gu[inter:]
        out += w * (w_down[e].double() @ h)
    return out


def time_config(name, shape, tokens, w_gate_up, w_down, min_ms, gen):
    hidden, inter, experts, top_k = shape
    sets = []
    for _ in range(INPUT_SETS):
        x = torch.randn(tokens, hidden, device="cuda", generator=gen).to(torch.bfloat16)
        ids, weights = route(tokens, experts, top_k, gen)
        sets.append((x, ids, weights))
    for _ in range(2):
        for s in sets:
            moe_layer(s[0], *s[1:], w_gate_up, w_down)
    torch.cuda.synchronize()

    x, ids, weights = sets[0]
    token = int(torch.randint(tokens, (1,), generator=torch.Generator().manual_seed(tokens)).item())
    got = moe_layer(x, ids, weights, w_gate_up, w_down)[token].double()
    want = reference_row(x, ids, weights, w_gate_up, w_down, token)
    err = ((got - want).norm() / want.norm()).item()

    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for s in sets:
        moe_layer(s[0], *s[1:], w_gate_up, w_down)
    stop.record()
    torch.cuda.synchronize()
    estimate = start.elapsed_time(stop) / INPUT_SETS
    iterations = int(min(2000, max(10, min_ms / max(estimate, 1e-3))))
    events = [torch.cuda.Event(enable_timing=True) for _ in range(iterations + 1)]
    events[0].record()
    for i in range(iterations):
        s = sets[i % INPUT_SETS]
        moe_layer(s[0], *s[1:], w_gate_up, w_down)
        events[i + 1].record()
    torch.cuda.synchronize()
    ms = statistics.median(events[i].elapsed_time(events[i + 1]) for i in range(iterations))

    touched = sum(torch.unique(s[1]).numel() for s in sets) / INPUT_SETS
    flops = 2.0 * tokens * top_k * 3 * hidden * inter
    weight_bytes = touched * 3 * hidden * inter * 2
    floor_ms = max(weight_bytes / BANDWIDTH, flops / MATRIX_RATE) * 1e3
    return dict(impl="torch_grouped_mm", shape=name, T=tokens, experts_touched=touched, ms=ms,
                tflops=flops / (ms * 1e-3) / 1e12, gbps=weight_bytes / (ms * 1e-3) / 1e9, floor_ms=floor_ms,
                ratio=ms / floor_ms, err=err)


def print_header():
    print(f"{'shape':<9} {'T':>6} {'experts':>8} {'ms':>10} {'TFLOP/s':>8} {'GB/s':>8} {'floor_ms':>9} "
          f"{'ratio':>7} {'err':>9}")


def print_row(r):
    print(f"{r['shape']:<9} {r['T']:>6} {r['experts_touched']:>8.1f} {r['ms']:>10.4f} {r['tflops']:>8.1f} "
          f"{r['gbps']:>8.1f} {r['floor_ms']:>9.4f} {r['ratio']:>7.2f} {r['err']:>9.2e}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shapes", default="mixtral,qwen3,deepseek")
    parser.add_argument("--tokens", default="1,16,128,1024,4096,16384")
    parser.add_argument("--min-ms", type=float, default=300)
    parser.add_argument("--csv", default="")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("torch_grouped_mm_peer: no CUDA device", file=sys.stderr)
        return 2
    if not hasattr(torch, "_grouped_mm"):
        print(f"torch_grouped_mm_peer: torch {torch.__version__} has no torch._grouped_mm", file=sys.stderr)
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    gen = torch.Generator(device="cuda").manual_seed(20240611)
    results = []
    # Rows are written as they are measured, so a run cut short keeps what it measured.
    csv_file = open(args.csv, "w", newline="") if args.csv else None
    writer = None
    for name in args.shapes.split(","):
        hidden, inter, experts, top_k = SHAPES[name]
        w_gate_up = torch.randn(experts, 2 * inter, hidden, device="cuda", dtype=torch.bfloat16, generator=gen)
        w_gate_up /= hidden ** 0.5
        w_down = torch.randn(experts, hidden, inter, device="cuda", dtype=torch.bfloat16, generator=gen)
        w_down /= inter ** 0.5
        print(f"\n{name}: hidden {hidden}, intermediate {inter}, {experts} experts top-{top_k}")
        print_header()
        for tokens in (int(t) for t in args.tokens.split(",")):
            r = time_config(name, SHAPES[name], tokens, w_gate_up, w_down, args.min_ms, gen)
            print_row(r)
            results.append(r)
            if csv_file:
                if writer is None:
                    writer = csv.DictWriter(csv_file, fieldnames=list(r.keys()))
                    writer.writeheader()
                writer.writerow(r)
                csv_file.flush()
        del w_gate_up, w_down
        torch.cuda.empty_cache()
    print(f"\nsummary (floor = max(weight bytes touched / {BANDWIDTH / 1e12:.1f} TB/s, "
          f"flops / {MATRIX_RATE / 1e12:.0f} TFLOP/s))")
    print_header()
    for r in results:
        print_row(r)
    if csv_file:
        csv_file.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
