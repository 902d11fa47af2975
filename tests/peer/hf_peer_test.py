#!/usr/bin/env python3
"""Peer test: `moectl forward` against HF transformers' own MoE blocks.

For each family (mixtral, qwen2_moe, qwen3_moe, deepseek_v3) it builds a tiny random model with
transformers, saves it with save_pretrained (F32 or BF16, one file or sharded), runs the model's
own MoE block in float32 on the stored weights for T=1 and T=33 random inputs, and checks that
moectl, given the saved folder, produces the same layer output (relative error below --tolerance)
and the same routing (expert ids per token as sets, and their weights).

Usage: hf_peer_test.py --moectl build/bin/moectl [--work-dir DIR]
       hf_peer_test.py --prepare-only              (build models and references only, no moectl)
Exits non-zero on any mismatch; every check prints one line, and the last line counts them.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from hf_moe_reference import BlockRun, router_scores, routing_without_bias, run_block  # noqa: E402
from hf_tiny_models import TinyModelSpec, all_specs, build_and_save, moe_block  # noqa: E402
from moe_compare import output_problems, relative_error, routing_problems  # noqa: E402
from moectl_forward import MoectlError, run_forward  # noqa: E402

TOKEN_COUNTS = (1, 33)
WEIGHT_TOLERANCE = 1e-5


class Tally:
    def __init__(self) -> None:
        self.passed = 0
        self.failed: list[str] = []

    def record(self, label: str, problems: list[str], detail: str = "") -> None:
        if problems:
            self.failed.append(label)
            print(f"FAIL {label}" + (f": {detail}" if detail else ""))
            for problem in problems[:12]:
                print(f"     {problem}")
            if len(problems) > 12:
                print(f"     ... and {len(problems) - 12} more")
        else:
            self.passed += 1
            print(f"ok   {label}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()


def make_input(spec: TinyModelSpec, layer: int, tokens: int, hidden: int) -> torch.Tensor:
    """Unit-variance rows, as after a decoder layer's RMSNorm. BF16-stored models get a BF16 input
    for T>1, so that moectl's BF16 input path is covered too."""
    gen = torch.Generator().manual_seed(1000 * spec.seed + 10 * layer + tokens)
    values = torch.randn(tokens, hidden, generator=gen)
    if spec.storage_dtype == torch.bfloat16 and tokens > 1:
        return values.bfloat16()
    return values


def zero_masked_choice(block: torch.nn.Module, hidden_states: torch.Tensor) -> torch.Tensor:
    """DeepSeek-V3 top-k ids if dropped groups were masked with 0.0 instead of HF's -inf."""
    gate = block.gate
    scores = router_scores(block, hidden_states)
    tokens, experts = scores.shape
    grouped = scores.view(tokens, gate.num_group, experts // gate.num_group)
    group_scores = grouped.topk(2, dim=-1).values.sum(dim=-1)
    keep = torch.zeros_like(group_scores).scatter_(1, group_scores.topk(gate.topk_group, dim=-1).indices, 1.0)
    masked = (grouped * keep.unsqueeze(-1)).view(tokens, experts)
    return masked.topk(gate.top_k, dim=-1).indices


def sanity_problems(spec: TinyModelSpec, layer: int, block: torch.nn.Module, x: torch.Tensor,
                    want: BlockRun, reloaded_block: torch.nn.Module) -> list[str]:
    """Checks that make the comparison meaningful: the saved folder reloads (through transformers'
    own loader) to the same block, and for DeepSeek-V3 the correction bias changes the routing."""
    problems = []
    again = run_block(reloaded_block, x)
    error = relative_error(again.output, want.output)
    if error > 1e-6 or not torch.equal(again.topk_ids, want.topk_ids):
        problems.append(f"from_pretrained of the saved folder gives a different block: relative error "
                        f"{error:.3e}, same ids: {torch.equal(again.topk_ids, want.topk_ids)}")
    if spec.family == "deepseek_v3" and x.shape[0] > 1:
        def id_sets(ids):
            return [set(row) for row in ids.tolist()]
        if id_sets(routing_without_bias(block, x)) == id_sets(want.topk_ids):
            problems.append("e_score_correction_bias changes no token's experts: the case tests nothing")
        if layer == 2 and id_sets(zero_masked_choice(block, x)) == id_sets(want.topk_ids):
            problems.append("masking dropped groups with 0.0 instead of -inf changes nothing here")
    return problems


def check_model(spec: TinyModelSpec, root: pathlib.Path, moectl: pathlib.Path | None,
                tolerance: float, tally: Tally) -> None:
    model, folder = build_and_save(spec, root)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    hidden = model.config.hidden_size
    storage = "bf16" if spec.storage_dtype == torch.bfloat16 else "f32"
    for layer in spec.moe_layers:
        block = moe_block(model, layer)
        for tokens in TOKEN_COUNTS:
            x = make_input(spec, layer, tokens, hidden)
            x_f32 = x.float()
            label = (f"{spec.family} ({spec.name}) layer {layer} T={tokens} "
                     f"[{storage} weights, {str(x.dtype).removeprefix('torch.')} input]")
            want = run_block(block, x_f32)
            sanity = sanity_problems(spec, layer, block, x_f32, want, moe_block(reloaded, layer))
            if sanity:
                tally.record(f"{label} reference", sanity)
                continue
            if moectl is None:
                tally.record(f"{label} reference", [], f"max |out| {want.output.abs().max().item():.3f}")
                continue
            try:
                got = run_forward(moectl, folder, layer, x, root / "runs", f"{spec.name}.L{layer}.T{tokens}")
            except MoectlError as exc:
                tally.record(label, [str(exc)])
                continue
            error, problems = output_problems(got.output, want.output, tolerance)
            problems += routing_problems(got.topk_ids.long(), got.topk_weights, want.topk_ids,
                                         want.topk_weights, router_scores(block, x_f32), WEIGHT_TOLERANCE)
            tally.record(label, problems, f"relative error {error:.2e}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moectl", type=pathlib.Path, help="path of the moectl binary")
    parser.add_argument("--work-dir", type=pathlib.Path, help="where models and runs go (emptied first)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="max relative output error")
    parser.add_argument("--prepare-only", action="store_true", help="build and check the references only")
    args = parser.parse_args()
    if args.moectl is None and not args.prepare_only:
        parser.error("--moectl is required (or --prepare-only)")
    if args.moectl is not None and not os.access(args.moectl, os.X_OK):
        print(f"FAIL: moectl not found or not executable at {args.moectl} (build it first: "
              f"ninja -C <build dir> moectl)")
        return 1

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, moectl {args.moectl}")
    root = args.work_dir or pathlib.Path(tempfile.mkdtemp(prefix="moe_hf_peer_"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)

    tally = Tally()
    for spec in all_specs():
        for note in spec.notes:
            print(f"     {spec.name}: {note}")
        try:
            check_model(spec, root, args.moectl if not args.prepare_only else None, args.tolerance, tally)
        except Exception as exc:  # a model that cannot be built or saved fails its family, loudly
            tally.record(f"{spec.family} ({spec.name})", [f"{type(exc).__name__}: {exc}"])
    print(f"work dir: {root}")
    if tally.failed:
        print("failed: " + "; ".join(tally.failed))
    print(f"{tally.passed} passed, {len(tally.failed)} failed")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
