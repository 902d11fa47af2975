"""python -m moe_cluster bench: decode tokens/s of one checkpoint three ways, measured in one run:
HF transformers with every expert local (the peer), the cluster with one micro-batch, and the cluster
with two micro-batches in flight; plus the parameter bytes each host holds.

Decode rate = B * (N - 1) / (t(N) - t(1)), where t(n) is the wall time of a greedy generation of n new
tokens for a batch of B prompts (so the prefill cancels out); each configuration runs once untimed
first.
"""

from __future__ import annotations

import torch
import transformers


def _timed(model, ids, mask, n, cluster, micro_batches):
    from moe_cluster import generate as gen
    return gen.generate(model, ids, mask, n, micro_batches=micro_batches, cluster=cluster)


def _decode_rate(model, ids, mask, n, cluster=None, micro_batches=1):
    _timed(model, ids, mask, 2, cluster, micro_batches)  # warm-up
    one = _timed(model, ids, mask, 1, cluster, micro_batches)
    full = _timed(model, ids, mask, n, cluster, micro_batches)
    decode_seconds = max(full.seconds - one.seconds, 1e-9)
    return ids.shape[0] * (n - 1) / decode_seconds, full


def run_bench(model_dir: str, args) -> int:
    from moe_cluster import Cluster, hf
    from moe_cluster.cli import _prompts
    batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    n = max(2, args.max_new_tokens)
    dtype = getattr(torch, args.dtype)
    saved_batch = args.batch
    args.batch = 1
    prompt = _prompts(args, model_dir)[0]
    args.batch = saved_batch

    local = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).eval()
    with Cluster(args.cluster, token=args.token, wire_dtype=args.wire_dtype, deadline_ms=args.deadline_ms) as cluster:
        remote = hf.load_model(model_dir, cluster, dtype=dtype).eval()
        info = cluster.model()
        print(f"model {model_dir} ({info['family']}, {info['num_layers']} layers, MoE {info['moe_layers']}, "
              f"{info['num_experts']} experts top-{info['top_k']}), cluster {args.cluster} "
              f"({len(cluster.status()['workers'])} workers), wire {args.wire_dtype}, host dtype {args.dtype}, "
              f"torch threads {torch.get_num_threads()}, prompt {len(prompt)} tokens, {n} new tokens")
        print(f"{'batch':>5} {'HF local tok/s':>15} {'cluster 1 mb':>13} {'cluster 2 mb':>13} "
              f"{'cluster share 1mb':>18} {'tokens equal':>13}")
        for b in batches:
            ids = torch.tensor([prompt] * b, dtype=torch.long)
            mask = torch.ones_like(ids)
            rate_local, ref = _decode_rate(local, ids, mask, n)
            rate_1, one = _decode_rate(remote, ids, mask, n, cluster, 1)
            rate_2, two = _decode_rate(remote, ids, mask, n, cluster, 2) if b >= 2 else (float("nan"), one)
            equal = torch.equal(ref.sequences, one.sequences) and torch.equal(ref.sequences, two.sequences)
            print(f"{b:>5} {rate_local:>15.1f} {rate_1:>13.1f} {rate_2:>13.1f} {100 * one.cluster_share:>17.0f}% "
                  f"{str(equal):>13}")
        full_bytes = hf.parameter_bytes(local)
        host_bytes = hf.parameter_bytes(remote)
        print(f"host parameter bytes: with experts (HF local) {full_bytes:,}; experts on the cluster {host_bytes:,} "
              f"({100 * host_bytes / full_bytes:.1f}%)")
    return 0
