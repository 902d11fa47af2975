#!/usr/bin/env python3
"""Bad use of moe_cluster gives one clear Python exception, of the documented class, with a message
that says what was wrong: a cluster serving another model (family, expert count, router weights), an
unreachable cluster (within the deadline), a missing or wrong cluster token, a non-CPU tensor, an int
tensor, and a layer that is not an MoE layer. One loopback cluster (coordinator + 2 workers, with a
cluster token) serves the completed deepseek_v3 test model, whose layer 0 is dense.
"""

from __future__ import annotations

import socket
import time

import fixtures
import numpy as np
import torch

import moe_cluster
from moe_cluster import hf
from moe_cluster.local import LocalCluster

TOKEN = "python-test-token"


def expect(c: fixtures.Checks, what: str, cls: type, fn, *must_say: str):
    started = time.perf_counter()
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class is what is checked
        elapsed = time.perf_counter() - started
        said = str(e)
        ok = isinstance(e, cls) and all(s in said for s in must_say)
        c.check(ok, f"{what}: {type(e).__name__}({said!r}) [want {cls.__name__} saying {list(must_say)}]")
        return elapsed
    c.check(False, f"{what}: no exception [want {cls.__name__}]")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    c = fixtures.Checks("python client errors")
    deepseek = fixtures.completed("deepseek_v3_bf16")
    qwen3 = fixtures.completed("qwen3_moe_f32")
    hidden = torch.randn(4, 64)

    # Unreachable: nothing listens on the port; the error comes within the deadline.
    port = free_port()
    elapsed = expect(c, "unreachable coordinator", moe_cluster.Unreachable,
                     lambda: moe_cluster.Cluster(f"127.0.0.1:{port}", deadline_ms=1500), f"127.0.0.1:{port}")
    c.check(elapsed is not None and elapsed < 1.5 + 1.0, f"unreachable: raised after {elapsed:.2f} s (deadline 1.5 s)")
    expect(c, "malformed address", moe_cluster.InvalidArgument, lambda: moe_cluster.Cluster("no-port-here"))

    with LocalCluster(deepseek, workers=2, token=TOKEN, log_dir=str(fixtures.WORK / "logs" / "errors")) as local:
        # Wrong and missing tokens: every read needs the token (issue 12), so the connect itself is refused.
        for label, token in (("wrong token", "not-the-token"), ("no token", None)):
            expect(c, f"{label}: connect", moe_cluster.Unauthorized,
                   lambda: moe_cluster.Cluster(local.address, token=token, deadline_ms=3000), "unauthorized")

        with moe_cluster.Cluster(local.address, token=TOKEN, wire_dtype="f32") as cluster:
            want = cluster.forward(1, hidden)
            c.check(want.shape == hidden.shape, "right token: forward works")
            # No coordinator address, only a worker's: model and placement come from the worker.
            worker = cluster.status()["workers"][0]["address"]
            with moe_cluster.Cluster(None, workers=[worker], token=TOKEN, wire_dtype="f32") as via_worker:
                c.check(torch.equal(via_worker.forward(1, hidden), want),
                        f"Cluster(None, workers=[{worker}]): same output as through the coordinator")
            # Inputs forward refuses.
            meta = torch.empty(4, 64, device="meta")
            expect(c, "tensor not on the CPU (meta)", moe_cluster.InvalidArgument, lambda: cluster.forward(1, meta),
                   "CPU tensors", "meta")
            if torch.cuda.is_available():
                expect(c, "CUDA tensor", moe_cluster.InvalidArgument,
                       lambda: cluster.forward(1, hidden.cuda()), "CPU tensors", "cuda")
            else:
                c.info("no CUDA device here: the CUDA case runs as the meta-device case above")
            expect(c, "int tensor", moe_cluster.InvalidArgument,
                   lambda: cluster.forward(1, torch.ones(4, 64, dtype=torch.int32)), "torch.int32")
            expect(c, "int numpy array", moe_cluster.InvalidArgument,
                   lambda: cluster.forward(1, np.ones((4, 64), dtype=np.int64)), "int64")
            expect(c, "wrong hidden size", moe_cluster.InvalidArgument,
                   lambda: cluster.forward(1, torch.randn(4, 32)), "hidden size 64", "(4, 32)")
            expect(c, "dense layer 0", moe_cluster.NotMoeLayer, lambda: cluster.forward(0, hidden),
                   "layer 0 is not an MoE layer", "MoE layers: 1, 2")
            expect(c, "layer 7 out of range", moe_cluster.NotMoeLayer, lambda: cluster.forward(7, hidden),
                   "layer 7 is not an MoE layer")
            expect(c, "router weights of dense layer 0", moe_cluster.NotMoeLayer,
                   lambda: cluster.router_weights(0), "layer 0 is not an MoE layer")

            # Another model than the cluster's.
            expect(c, "load_model of another family", moe_cluster.ModelMismatch,
                   lambda: hf.load_model(qwen3, cluster), "qwen3_moe", "deepseek_v3")
            other = fixtures.completed("mixtral_bf16_sharded")
            expect(c, "attach of another family's model", moe_cluster.ModelMismatch,
                   lambda: hf.attach(fixtures.hf_local(other), cluster), "family differs")
            model = fixtures.hf_local(deepseek)
            with torch.no_grad():
                model.model.layers[2].mlp.gate.weight[3, :] += 0.5
            expect(c, "attach of a model whose layer-2 router differs", moe_cluster.ModelMismatch,
                   lambda: hf.attach(model, cluster), "layer 2 router gate differs")
            model = fixtures.hf_local(deepseek)
            with torch.no_grad():
                model.model.layers[1].mlp.gate.e_score_correction_bias[0] += 0.5
            expect(c, "attach of a model whose layer-1 correction bias differs", moe_cluster.ModelMismatch,
                   lambda: hf.attach(model, cluster), "layer 1 router correction_bias differs")
            # The same model in bf16 on the host is the same model (rounding only).
            hf.attach(fixtures.hf_local(deepseek).to(torch.bfloat16), cluster)
            c.check(True, "attach of the same model in bf16 is accepted")

        expect(c, "forward after close", moe_cluster.ClusterError, lambda: cluster.forward(1, hidden), "closed")
    return c.finish()


if __name__ == "__main__":
    fixtures.run_main(main)
