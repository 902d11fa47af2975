#!/usr/bin/env python3
"""Testdata cases for ops/gpu/run-worker-parity.sh (python3 + numpy only, no safetensors package).

  parity_cases.py split CHECKPOINT_DIR WORK_DIR
      reads CHECKPOINT_DIR/cases.safetensors (model.layers.L.mlp.TAG.{input,output}, see
      ../shared/testdata/README.md) and writes, per case, WORK_DIR/L.TAG.input.safetensors (hidden_states
      [T, hidden] F32, moectl forward's input contract) and WORK_DIR/L.TAG.expected.npy; prints one line
      "L TAG T" per case.
  parity_cases.py compare GOT.safetensors EXPECTED.npy TOLERANCE
      prints "REL_L2 MAX_REL PASS|FAIL": ||got - want||_2 / ||want||_2 and max|got - want| / max|want| (the
      project's relative error), PASS when both are below TOLERANCE (non-finite output: "inf inf FAIL");
      exits 1 with a message when the file or the shape is wrong.
"""
import json
import re
import struct
import sys

import numpy as np

CASE = re.compile(r"^model\.layers\.(\d+)\.mlp\.([A-Za-z0-9_]+)\.input$")


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SystemExit(f"{path}: not a safetensors file (only {len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        raise SystemExit(f"{path}: header of {n} bytes runs past the end of the file")
    header = json.loads(data[8 : 8 + n])
    body = memoryview(data)[8 + n :]
    tensors = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        begin, end = meta["data_offsets"]
        raw = np.frombuffer(body[begin:end], dtype=np.uint8)
        if meta["dtype"] == "F32":
            arr = raw.view("<f4")
        elif meta["dtype"] == "BF16":
            arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
        elif meta["dtype"] == "F16":
            arr = raw.view("<f2").astype(np.float32)
        else:
            continue
        tensors[name] = arr.reshape(meta["shape"])
    return tensors


def write_safetensors(path, name, arr):
    arr = np.ascontiguousarray(arr, dtype="<f4")
    header = json.dumps({name: {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [0, arr.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        f.write(arr.tobytes())


def split(checkpoint, work):
    tensors = read_safetensors(f"{checkpoint}/cases.safetensors")
    cases = []
    for name in tensors:
        m = CASE.match(name)
        if not m:
            continue
        layer, tag = int(m.group(1)), m.group(2)
        want_name = name[: -len(".input")] + ".output"
        if want_name not in tensors:
            raise SystemExit(f"{checkpoint}/cases.safetensors: {name} has no {want_name}")
        x, want = tensors[name], tensors[want_name]
        if x.ndim != 2 or want.shape != x.shape:
            raise SystemExit(f"{checkpoint}/cases.safetensors: {name} {x.shape} vs {want_name} {want.shape}")
        write_safetensors(f"{work}/{layer}.{tag}.input.safetensors", "hidden_states", x)
        np.save(f"{work}/{layer}.{tag}.expected.npy", want.astype(np.float32))
        cases.append((layer, tag, x.shape[0]))
    if not cases:
        raise SystemExit(f"{checkpoint}/cases.safetensors: no model.layers.L.mlp.TAG.input tensors")
    for layer, tag, t in sorted(cases):
        print(layer, tag, t)


def compare(got_path, want_path, tolerance):
    got = read_safetensors(got_path)
    if "hidden_states" not in got:
        raise SystemExit(f"{got_path}: no hidden_states tensor")
    got = got["hidden_states"].astype(np.float64)
    want = np.load(want_path).astype(np.float64)
    if got.shape != want.shape:
        raise SystemExit(f"{got_path}: hidden_states is {list(got.shape)}, expected {list(want.shape)}")
    if not np.all(np.isfinite(got)):
        print("inf inf FAIL")
        return
    diff = got - want
    rel_l2 = np.linalg.norm(diff) / max(np.linalg.norm(want), 1e-30)
    max_rel = np.abs(diff).max() / max(np.abs(want).max(), 1e-30)
    verdict = "PASS" if rel_l2 < tolerance and max_rel < tolerance else "FAIL"
    print(f"{rel_l2:.3e} {max_rel:.3e} {verdict}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "split":
        split(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "compare":
        compare(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        raise SystemExit(__doc__)
