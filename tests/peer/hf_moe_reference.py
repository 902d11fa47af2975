"""Runs an HF transformers MoE block on [T, hidden] inputs and records the routing it used.

The routing is read where the block hands it over: a forward pre-hook on the block's `experts`
module sees the (hidden_states, top_k_index, top_k_weights) that the block's own router produced,
so what is compared is exactly what HF used, not a re-implementation of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BlockRun:
    output: torch.Tensor        # [T, hidden] float32: routed + shared experts, no residual, no norm
    topk_ids: torch.Tensor      # [T, K] int64
    topk_weights: torch.Tensor  # [T, K] float32


def run_block(block: torch.nn.Module, hidden_states: torch.Tensor) -> BlockRun:
    if hidden_states.dim() != 2 or hidden_states.dtype != torch.float32:
        raise ValueError(f"run_block wants [T, hidden] float32, got {list(hidden_states.shape)} "
                         f"{hidden_states.dtype}")
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def capture(_module, args, kwargs):
        names = ("hidden_states", "top_k_index", "top_k_weights")
        values = dict(zip(names, args)) | {k: v for k, v in kwargs.items() if k in names}
        missing = [n for n in names[1:] if n not in values]
        if missing:
            raise RuntimeError(f"{type(block.experts).__name__}.forward was called without {missing}; "
                               f"this transformers version passes the routing differently")
        seen.append((values["top_k_index"].detach().clone(), values["top_k_weights"].detach().clone()))

    handle = block.experts.register_forward_pre_hook(capture, with_kwargs=True)
    try:
        with torch.no_grad():
            output = block(hidden_states.unsqueeze(0))
    finally:
        handle.remove()
    if isinstance(output, tuple):  # older Mixtral blocks also return router logits
        output = output[0]
    if len(seen) != 1:
        raise RuntimeError(f"expected the experts module to run once, it ran {len(seen)} times")
    ids, weights = seen[0]
    return BlockRun(output=output.reshape(hidden_states.shape).float(),
                    topk_ids=ids.reshape(hidden_states.shape[0], -1).long(),
                    topk_weights=weights.reshape(hidden_states.shape[0], -1).float())


def router_scores(block: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """The per-expert scores the block's router selects on: softmax probabilities, or for DeepSeek-V3
    sigmoid(logits) + e_score_correction_bias (before group masking). For diagnostics only."""
    with torch.no_grad():
        logits = block.gate(hidden_states)[0].float()
        bias = getattr(block.gate, "e_score_correction_bias", None)
        if bias is not None:
            return logits.sigmoid() + bias.float()
        return logits.softmax(dim=-1)


def routing_without_bias(block: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """top_k ids the block's router picks with e_score_correction_bias set to zero (restored after)."""
    bias = block.gate.e_score_correction_bias
    saved = bias.detach().clone()
    try:
        with torch.no_grad():
            bias.zero_()
        return run_block(block, hidden_states).topk_ids
    finally:
        with torch.no_grad():
            bias.copy_(saved)
