#!/usr/bin/env python3
"""moe_cluster.hf with the families added after the first four: for every F32 checkpoint of
tests/data/hf_moe_families (whole models saved by transformers, see tools/make_test_checkpoints.py), a
loopback cluster (coordinator + 2 workers) serves it, moe_cluster.hf.load_model builds the HF model with
its MoE blocks on the cluster (f32 on the wire), and greedy generation of 8 new tokens for 3 prompts
gives the same token ids as HF transformers running the whole model locally; the last step's logits
agree within 1e-4 relative.
"""

from __future__ import annotations

import os
import pathlib
import sys

import fixtures
import torch

import moe_cluster
from moe_cluster import generate as gen
from moe_cluster import hf
from moe_cluster.local import LocalCluster

FAMILY_DATA = pathlib.Path(os.environ.get(
    "MOE_FAMILY_DATA_DIR", pathlib.Path(__file__).resolve().parents[1] / "data" / "hf_moe_families"))
PROMPTS = [[5, 17, 33, 9, 60, 42, 2, 7], [12, 50, 3, 45], [20, 8]]  # ids < 64, the test vocab
NEW_TOKENS = 8
LOGIT_TOLERANCE = 1e-4


def checkpoints() -> list[str]:
    found = sorted(p.name for p in FAMILY_DATA.iterdir() if p.name.endswith("_f32") and (p / "config.json").exists())
    if not found:
        raise SystemExit(f"no F32 checkpoints under {FAMILY_DATA}")
    return found


def check(name: str, c: fixtures.Checks) -> None:
    model_dir = FAMILY_DATA / name
    torch.manual_seed(0)
    reference = fixtures.hf_local(model_dir)
    ids, mask = gen.pad_prompts(PROMPTS)
    want = gen.generate(reference, ids, mask, NEW_TOKENS)
    with LocalCluster(model_dir, workers=2, log_dir=str(fixtures.WORK / "logs" / name)) as local:
        with moe_cluster.Cluster(local.address, wire_dtype="f32") as cluster:
            model = hf.load_model(model_dir, cluster, dtype=torch.float32)
            got = gen.generate(model, ids, mask, NEW_TOKENS, cluster=cluster)
            differing = (got.new_tokens != want.new_tokens).sum().item()
            c.check(torch.equal(got.sequences, want.sequences),
                    f"{name}: {NEW_TOKENS} new tokens x 3 prompts identical to HF local ({differing} differ)")
            err = fixtures.relative(got.last_logits, want.last_logits)
            c.check(err <= LOGIT_TOLERANCE, f"{name}: last-step logits relative difference {err:.2e} "
                                            f"(<= {LOGIT_TOLERANCE})")


def main() -> int:
    c = fixtures.Checks("moe_cluster.hf on the added families")
    for name in sys.argv[1:] or checkpoints():
        check(name, c)
    return c.finish()


if __name__ == "__main__":
    fixtures.run_main(main)
