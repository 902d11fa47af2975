"""Runs `moectl forward` on one MoE layer and reads back what it wrote.

Contract: moectl forward --model DIR --layer L --input IN --output OUT --routing-out R
IN holds `hidden_states` [T, hidden] (F32 or BF16); OUT gets `hidden_states` [T, hidden] F32;
R gets `topk_ids` I32 [T, K] and `topk_weights` F32 [T, K].
"""

from __future__ import annotations

import pathlib
import subprocess
from dataclasses import dataclass

import torch
from safetensors.torch import load_file, save_file


@dataclass
class MoectlResult:
    output: torch.Tensor        # [T, hidden] float32
    topk_ids: torch.Tensor      # [T, K] int32
    topk_weights: torch.Tensor  # [T, K] float32


class MoectlError(RuntimeError):
    pass


def _tensor(tensors: dict, name: str, path: pathlib.Path, dtype: torch.dtype, rows: int) -> torch.Tensor:
    if name not in tensors:
        raise MoectlError(f"{path} has no tensor '{name}' (it has {sorted(tensors)})")
    value = tensors[name]
    if value.dtype != dtype or value.dim() != 2 or value.shape[0] != rows:
        raise MoectlError(f"{path}: '{name}' should be {dtype} [{rows}, *], got {value.dtype} "
                          f"{list(value.shape)}")
    return value


def run_forward(moectl: pathlib.Path, model_dir: pathlib.Path, layer: int, hidden_states: torch.Tensor,
                work_dir: pathlib.Path, tag: str, timeout_s: float = 120.0) -> MoectlResult:
    """hidden_states: [T, hidden], F32 or BF16, written as given."""
    work_dir.mkdir(parents=True, exist_ok=True)
    in_path, out_path, routing_path = (work_dir / f"{tag}.{kind}.safetensors"
                                       for kind in ("input", "output", "routing"))
    save_file({"hidden_states": hidden_states.contiguous()}, str(in_path))
    command = [str(moectl), "forward", "--model", str(model_dir), "--layer", str(layer),
               "--input", str(in_path), "--output", str(out_path), "--routing-out", str(routing_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        raise MoectlError(f"`{' '.join(command)}` did not finish within {timeout_s} s") from exc
    if done.returncode != 0:
        raise MoectlError(f"`{' '.join(command)}` exited with {done.returncode}: "
                          f"{(done.stderr or done.stdout).strip()[-2000:]}")
    rows = hidden_states.shape[0]
    output = _tensor(load_file(str(out_path)), "hidden_states", out_path, torch.float32, rows)
    if output.shape != hidden_states.shape:
        raise MoectlError(f"{out_path}: hidden_states is {list(output.shape)}, the input was "
                          f"{list(hidden_states.shape)}")
    routing = load_file(str(routing_path))
    ids = _tensor(routing, "topk_ids", routing_path, torch.int32, rows)
    weights = _tensor(routing, "topk_weights", routing_path, torch.float32, rows)
    if ids.shape != weights.shape:
        raise MoectlError(f"{routing_path}: topk_ids {list(ids.shape)} and topk_weights "
                          f"{list(weights.shape)} differ in shape")
    return MoectlResult(output=output, topk_ids=ids, topk_weights=weights)
