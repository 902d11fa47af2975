#!/usr/bin/env python3
"""A worker killed with SIGKILL in the middle of a generation does not change a single token: a
loopback cluster (coordinator + 3 workers, every expert on 2 workers) serves a completed test model;
while moe_cluster.hf generates 16 tokens for 3 prompts (f32 on the wire), a thread SIGKILLs one worker
once a third of the MoE calls are done. The tokens must equal HF transformers' run of the whole model
locally, and MoE calls must have continued after the kill.
"""

from __future__ import annotations

import os
import sys
import threading
import time

import fixtures
import torch

import moe_cluster
from moe_cluster import generate as gen
from moe_cluster import hf
from moe_cluster.local import LocalCluster


def main() -> int:
    c = fixtures.Checks("python client failover")
    name = sys.argv[1] if len(sys.argv) > 1 else "qwen2_moe_bf16"
    model_dir = fixtures.completed(name)
    ids, mask = gen.pad_prompts(fixtures.PROMPTS)
    want = gen.generate(fixtures.hf_local(model_dir), ids, mask, fixtures.NEW_TOKENS)

    with LocalCluster(model_dir, workers=3, replicas=2, log_dir=str(fixtures.WORK / "logs" / "failover")) as local:
        with moe_cluster.Cluster(local.address, wire_dtype="f32") as cluster:
            model = hf.load_model(model_dir, cluster, dtype=torch.float32)
            calls_per_run = fixtures.NEW_TOKENS * len(cluster.model()["moe_layers"])
            kill_at = cluster.forward_calls + calls_per_run // 3
            victim_pid = local.worker_pid(1)
            killed = {}

            def killer():
                deadline = time.monotonic() + 60
                while cluster.forward_calls < kill_at and time.monotonic() < deadline:
                    time.sleep(0.0005)
                local.kill_worker(1)
                killed["calls"] = cluster.forward_calls

            thread = threading.Thread(target=killer, name="killer")
            thread.start()
            got = gen.generate(model, ids, mask, fixtures.NEW_TOKENS, cluster=cluster)
            thread.join()
            total = cluster.forward_calls
            stats = cluster.status()["client"]

    alive = os.path.exists(f"/proc/{victim_pid}") and open(f"/proc/{victim_pid}/stat").read().split()[2] != "Z"
    c.check(not alive, f"worker 1 (pid {victim_pid}) was killed with SIGKILL")
    c.check("calls" in killed and killed["calls"] < total,
            f"the kill came mid-generation: after MoE call {killed.get('calls')} of {total}")
    differing = (got.new_tokens != want.new_tokens).sum().item()
    c.check(torch.equal(got.sequences, want.sequences),
            f"{name}: all {want.new_tokens.numel()} tokens identical to HF local despite the kill ({differing} differ)")
    if differing:
        print(f"     want {want.new_tokens.tolist()}\n     got  {got.new_tokens.tolist()}")
    c.info(f"client retries {stats['retries']}, calls ok {stats['calls_ok']}, errors {stats['calls_error']}, "
           f"deadline exceeded {stats['calls_deadline_exceeded']}")
    return c.finish()


if __name__ == "__main__":
    fixtures.run_main(main)
