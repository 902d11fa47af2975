#!/usr/bin/env python3
"""Peer test: `moectl bench engine` runs the PyTorch peer (tools/torch_cpu_moe_peer.py) in the same run.

On a tiny layer it checks that every row carries a measured peer time and ratio, and that the peer
computed the same layer as ours on the same weights and inputs: f32 within 1e-4 of ours (relative to
max |ours|), bf16 (bf16 activations on the peer's side) within 5e-2. Timing is not asserted.

usage: bench_engine_peer_test.py --moectl build/bin/moectl [--python PYTHON]
"""
import argparse
import subprocess
import sys


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--moectl", required=True)
    p.add_argument("--python", default=sys.executable)
    a = p.parse_args()
    cmd = [a.moectl, "bench", "engine", "--shape", "64,160,4,2", "--tokens", "1,8,40", "--pairs", "1",
           "--min-seconds", "0.01", "--peer-python", a.python]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    print(run.stdout)
    if run.returncode != 0:
        print(run.stderr)
        print(f"FAIL: moectl exited {run.returncode}")
        return 1
    failures, checks = [], 0
    if run.stdout.count("peer: PyTorch (torch ") != 2:
        failures.append("the peer did not start for both weight dtypes")
    rows = [line.split() for line in run.stdout.splitlines() if line.split()[:1] in (["f32"], ["bf16"])]
    if len(rows) != 6:
        failures.append(f"expected 6 rows (f32, bf16 x 3 token counts), got {len(rows)}")
    for c in rows:
        checks += 1
        name = f"{c[0]} T={c[1]}"
        try:
            peer_ms, ratio, diff = float(c[5]), float(c[7].rstrip("x")), float(c[8])
        except ValueError:
            failures.append(f"{name}: peer cells are not figures: {c[5:9]}")
            continue
        limit = 1e-4 if c[0] == "f32" else 5e-2
        if not (peer_ms > 0 and ratio > 0):
            failures.append(f"{name}: peer ms {peer_ms}, ratio {ratio}")
        if not diff < limit:
            failures.append(f"{name}: peer output differs from ours by {diff} (limit {limit})")
        if "faster than peer met" not in " ".join(c) and "faster than peer MISSED" not in " ".join(c):
            failures.append(f"{name}: no peer target in the row")
    for f in failures:
        print("FAIL:", f)
    print(f"{checks - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
