#!/usr/bin/env python3
"""For every checkpoint in testdata/hf_moe (completed into a whole model, see fixtures.py): a loopback
cluster of real processes (coordinator + 3 workers) serves it, and
- the cluster's experts are the checkpoint's: each MoE layer's stored cases (cases.safetensors, float64
  references from the stored weights) through moe_cluster.Cluster(wire_dtype="f32") agree within 1e-4;
- greedy generation of 16 new tokens for 3 prompts of different lengths (left padding, attention mask)
  gives the same token ids with HF transformers running the whole model locally and with
  moe_cluster.hf.load_model (experts on the cluster, f32 on the wire), in 1 and in 2 micro-batches;
  the last step's logits agree within 1e-4 relative;
- the host holds at most the checkpoint's non-routed-expert parameter bytes + 5% (printed);
- with bf16 on the wire: the token agreement and the largest logit difference are reported.
"""

from __future__ import annotations

import sys
import time

import fixtures
import torch
from safetensors.torch import load_file

import moe_cluster
from moe_cluster import generate as gen
from moe_cluster import hf
from moe_cluster.local import LocalCluster

LOGIT_TOLERANCE = 1e-4
CASE_TOLERANCE = 1e-4
MEMORY_ALLOWANCE = 1.05


def check_family(name: str, c: fixtures.Checks) -> None:
    started = time.perf_counter()
    model_dir = fixtures.completed(name)
    reference = fixtures.hf_local(model_dir)
    ids, mask = gen.pad_prompts(fixtures.PROMPTS)
    want = gen.generate(reference, ids, mask, fixtures.NEW_TOKENS)
    c.check(want.new_tokens.shape == (3, fixtures.NEW_TOKENS), f"{name}: HF local made {tuple(want.new_tokens.shape)} new tokens")

    with LocalCluster(model_dir, workers=3, log_dir=str(fixtures.WORK / "logs" / name)) as local:
        with moe_cluster.Cluster(local.address, wire_dtype="f32") as cluster:
            info = cluster.model()
            cases = load_file(str(fixtures.HF_MOE / name / "cases.safetensors"))
            for layer in info["moe_layers"]:
                for tag in ("one", "batch"):
                    x = cases[f"model.layers.{layer}.mlp.{tag}.input"]
                    err = fixtures.relative(cluster.forward(layer, x), cases[f"model.layers.{layer}.mlp.{tag}.output"])
                    c.check(err < CASE_TOLERANCE, f"{name}: layer {layer} stored case '{tag}' through the cluster: "
                                                  f"relative error {err:.2e} (< {CASE_TOLERANCE})")

            model = hf.load_model(model_dir, cluster, dtype=torch.float32)
            for micro_batches in (1, 2):
                got = gen.generate(model, ids, mask, fixtures.NEW_TOKENS, micro_batches=micro_batches, cluster=cluster)
                same = torch.equal(got.sequences, want.sequences)
                differing = (got.new_tokens != want.new_tokens).sum().item()
                c.check(same, f"{name}: f32 wire, {micro_batches} micro-batch(es): {fixtures.NEW_TOKENS} new tokens x 3 "
                              f"prompts identical to HF local ({differing} differ)")
                if not same:
                    print(f"     want {want.new_tokens.tolist()}\n     got  {got.new_tokens.tolist()}")
                err = fixtures.relative(got.last_logits, want.last_logits)
                c.check(err <= LOGIT_TOLERANCE, f"{name}: f32 wire, {micro_batches} micro-batch(es): last-step logits "
                                                f"relative difference {err:.2e} (<= {LOGIT_TOLERANCE})")

            stored = fixtures.stored_tensors(model_dir)
            allowed = sum(b for k, (_, b) in stored.items() if not fixtures.is_routed_expert(k))
            host = hf.parameter_bytes(model)
            full = hf.parameter_bytes(reference)
            c.check(host <= allowed * MEMORY_ALLOWANCE,
                    f"{name}: host parameter bytes {host:,} <= non-routed-expert checkpoint bytes {allowed:,} + 5% "
                    f"(HF with experts: {full:,})")

        with moe_cluster.Cluster(local.address, wire_dtype="bf16") as cluster_bf16:
            model_bf16 = hf.load_model(model_dir, cluster_bf16, dtype=torch.float32)
            got = gen.generate(model_bf16, ids, mask, fixtures.NEW_TOKENS, cluster=cluster_bf16)
            agree = (got.new_tokens == want.new_tokens).float().mean().item()
            diff = (got.last_logits - want.last_logits).abs().max().item()
            c.info(f"{name}: bf16 wire: token agreement {100 * agree:.1f}% "
                   f"({(got.new_tokens == want.new_tokens).sum().item()}/{want.new_tokens.numel()}), largest "
                   f"last-step logit difference {diff:.3e} (relative {fixtures.relative(got.last_logits, want.last_logits):.2e})")
    c.info(f"{name}: {time.perf_counter() - started:.1f} s")


def main() -> int:
    c = fixtures.Checks("python client generation")
    names = sys.argv[1:] or fixtures.families()
    for name in names:
        check_family(name, c)
    return c.finish()


if __name__ == "__main__":
    fixtures.run_main(main)
