"""Compares a MoE layer's output and routing from moectl against the HF reference.

Each function returns a list of problems (empty when they agree), each a line that names the
quantity, the token where it matters, and the numbers on both sides.
"""

from __future__ import annotations

import torch


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """max |got - want| / max |want| (inf when got has a NaN or Inf)."""
    if not torch.isfinite(got).all():
        return float("inf")
    scale = want.abs().max().item()
    if scale == 0.0:
        raise ValueError("the reference output is all zeros: the comparison would mean nothing")
    return (got.double() - want.double()).abs().max().item() / scale


def output_problems(got: torch.Tensor, want: torch.Tensor, tolerance: float) -> tuple[float, list[str]]:
    error = relative_error(got, want)
    if error < tolerance:
        return error, []
    diff = (got.double() - want.double()).abs()
    token = int(diff.max(dim=1).values.argmax())
    return error, [f"output relative error {error:.3e} >= {tolerance:.0e} (worst token {token}: "
                   f"max |got-want| {diff[token].max().item():.3e}, max |want| {want.abs().max().item():.3e})"]


def routing_problems(got_ids: torch.Tensor, got_weights: torch.Tensor, want_ids: torch.Tensor,
                     want_weights: torch.Tensor, scores: torch.Tensor, weight_tolerance: float) -> list[str]:
    """Ids are compared as sets per token, weights after pairing them by expert id.
    scores: the router's per-expert selection scores, printed for a token whose ids differ."""
    if got_ids.shape != want_ids.shape:
        return [f"routing shape: moectl topk_ids {list(got_ids.shape)}, HF {list(want_ids.shape)}"]
    problems = []
    scale = max(1.0, want_weights.abs().max().item())
    for token in range(want_ids.shape[0]):
        got_set, want_set = set(got_ids[token].tolist()), set(want_ids[token].tolist())
        if got_set != want_set:
            ranked = scores[token].argsort(descending=True).tolist()[: want_ids.shape[1] + 2]
            problems.append(f"token {token}: moectl experts {sorted(got_set)}, HF experts {sorted(want_set)} "
                            f"(HF scores, best first: " +
                            ", ".join(f"{e}:{scores[token, e].item():.6f}" for e in ranked) + ")")
            continue
        got_by_id = dict(zip(got_ids[token].tolist(), got_weights[token].tolist()))
        want_by_id = dict(zip(want_ids[token].tolist(), want_weights[token].tolist()))
        for expert, want_w in sorted(want_by_id.items()):
            if abs(got_by_id[expert] - want_w) > weight_tolerance * scale:
                problems.append(f"token {token} expert {expert}: moectl weight {got_by_id[expert]:.7f}, "
                                f"HF {want_w:.7f}")
    return problems
