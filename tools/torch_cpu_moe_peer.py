#!/usr/bin/env python3
"""The PyTorch CPU peer of `moectl bench engine`: one MoE layer as HF transformers' Mixtral block runs it.

moectl starts this script, hands it the very expert weights and routed inputs it runs itself, and drives
it over stdin/stdout so that ours and the peer alternate in one run (ABAB). The layer is the HF-style
loop over experts (MixtralSparseMoeBlock): for each expert hit, gather its tokens, w2(silu(w1 x) * w3 x)
times the routing weight, index_add into the output; in the weights' dtype (f32, or bf16 with bf16
activations as an HF bf16 model runs), under torch.inference_mode, with torch.set_num_threads(threads).

usage: torch_cpu_moe_peer.py --hidden H --intermediate I --experts E --top-k K --dtype f32|bf16
                             --threads N --weights FILE
  FILE: for each expert, gate [I, H], up [I, H], down [H, I] row-major, raw f32 or bf16 bits.
protocol (one line each way):
  input PATH T V  PATH: V input sets, each x [T, H] f32, expert ids [T, K] int32, routing
                  weights [T, K] f32 (decode cycles through V sets, as moectl does)  -> "ok"
  run REPS        one warm-up call, then REPS timed calls, cycling the sets     -> "ms M" (median)
  output PATH     writes the first set's output [T, H] as f32                    -> "ok"
  threads N       torch.set_num_threads(N)                                        -> "ok"
  quit
Errors answer "error MESSAGE" and the script goes on reading.
"""
import argparse
import statistics
import sys
import time

import numpy as np
import torch


def moe_block(x, ids, weights, experts, num_experts):
    """HF MixtralSparseMoeBlock's expert loop (router already applied): x [T, H] -> [T, H]."""
    out = torch.zeros_like(x)
    mask = torch.nn.functional.one_hot(ids, num_classes=num_experts).permute(2, 1, 0)
    hit = torch.greater(mask.sum(dim=(-1, -2)), 0).nonzero()
    for expert in hit:
        e = int(expert[0])
        idx, top_x = torch.where(mask[e])
        state = x[top_x]
        w1, w3, w2 = experts[e]
        h = torch.nn.functional.silu(torch.nn.functional.linear(state, w1)) * torch.nn.functional.linear(state, w3)
        y = torch.nn.functional.linear(h, w2) * weights[top_x, idx, None]
        out.index_add_(0, top_x, y.to(x.dtype))
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--intermediate", type=int, required=True)
    p.add_argument("--experts", type=int, required=True)
    p.add_argument("--top-k", type=int, required=True)
    p.add_argument("--dtype", choices=["f32", "bf16"], required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--weights", required=True)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    H, I, E, K = a.hidden, a.intermediate, a.experts, a.top_k
    dtype = torch.float32 if a.dtype == "f32" else torch.bfloat16
    raw = np.fromfile(a.weights, dtype=np.float32 if a.dtype == "f32" else np.int16)
    if raw.size != E * 3 * H * I:
        print(f"error weights file {a.weights} holds {raw.size} values, expected {E * 3 * H * I}", flush=True)
        return 1
    flat = torch.from_numpy(raw)
    if a.dtype == "bf16":
        flat = flat.view(torch.bfloat16)
    experts, at = [], 0
    for _ in range(E):
        gate = flat[at:at + I * H].reshape(I, H).clone(); at += I * H
        up = flat[at:at + I * H].reshape(I, H).clone(); at += I * H
        down = flat[at:at + H * I].reshape(H, I).clone(); at += H * I
        experts.append((gate, up, down))
    del raw, flat
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()} cpu {torch.backends.cpu.get_cpu_capability()}",
          flush=True)

    sets, turn = [], 0
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            if words[0] == "input":
                path, T, V = words[1], int(words[2]), int(words[3])
                buf = np.fromfile(path, dtype=np.uint8)
                one = T * H * 4 + 2 * T * K * 4
                if buf.size != V * one:
                    raise ValueError(f"input {path} holds {buf.size} bytes, expected {V * one} for T={T}, V={V}")
                sets = []
                for v in range(V):
                    b = buf[v * one:(v + 1) * one]
                    x = torch.from_numpy(b[:T * H * 4].view(np.float32).reshape(T, H).copy()).to(dtype)
                    ids = torch.from_numpy(b[T * H * 4:T * H * 4 + T * K * 4].view(np.int32).reshape(T, K).astype(np.int64))
                    w = torch.from_numpy(b[T * H * 4 + T * K * 4:].view(np.float32).reshape(T, K).copy()).to(dtype)
                    sets.append((x, ids, w))
                print("ok", flush=True)
            elif words[0] == "run":
                reps = int(words[1])
                times = []
                with torch.inference_mode():
                    moe_block(*sets[turn % len(sets)], experts, E)
                    turn += 1
                    for _ in range(reps):
                        s = sets[turn % len(sets)]
                        turn += 1
                        t0 = time.perf_counter()
                        moe_block(*s, experts, E)
                        times.append(time.perf_counter() - t0)
                print(f"ms {statistics.median(times) * 1e3:.6f}", flush=True)
            elif words[0] == "threads":
                torch.set_num_threads(int(words[1]))
                print("ok", flush=True)
            elif words[0] == "output":
                with torch.inference_mode():
                    y = moe_block(*sets[0], experts, E)
                y.float().numpy().tofile(words[1])
                print("ok", flush=True)
            else:
                raise ValueError(f"unknown command {words[0]!r}")
        except Exception as e:  # the driver reads one line per command
            print(f"error {type(e).__name__}: {e}".replace("\n", " "), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
