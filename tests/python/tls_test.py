#!/usr/bin/env python3
"""moe_cluster against a cluster with mutual TLS and a cluster token (issue 12): a loopback cluster
(coordinator + 2 workers, every connection TLS, token required) serves the completed deepseek_v3 test
model. A client with a certificate from the cluster CA and the token from a file gets the MoE layer's
output (checked against HF transformers' own block); the same through the MOE_TLS_* and
MOE_CLUSTER_TOKEN_FILE variables alone; a client whose certificate comes from another CA is refused
with TlsRefused naming the handshake; one without TLS cannot connect; half the TLS files is
InvalidArgument. Certificates are made by ops/tls/make-dev-certs.sh under the work folder.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import fixtures
import torch

import moe_cluster
from moe_cluster.local import LocalCluster

TOKEN = "python-tls-test-token"
REPO = pathlib.Path(__file__).resolve().parents[2]


def expect(c: fixtures.Checks, what: str, cls: type, fn, *must_say: str) -> None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - the class is what is checked
        said = str(e)
        ok = isinstance(e, cls) and all(s in said for s in must_say)
        c.check(ok, f"{what}: {type(e).__name__}({said!r}) [want {cls.__name__} saying {list(must_say)}]")
        return
    c.check(False, f"{what}: no exception [want {cls.__name__}]")


def make_certs(folder: pathlib.Path, *names: str) -> pathlib.Path:
    subprocess.run([str(REPO / "ops" / "tls" / "make-dev-certs.sh"), str(folder), *names], check=True)
    return folder


def main() -> int:
    c = fixtures.Checks("python client with TLS and a cluster token")
    deepseek = fixtures.completed("deepseek_v3_bf16")
    certs = make_certs(fixtures.WORK / "tls" / "cluster", "node", "client")
    other = make_certs(fixtures.WORK / "tls" / "other-ca", "client")
    token_file = fixtures.WORK / "tls" / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    client = {"tls_cert": str(certs / "client.pem"), "tls_key": str(certs / "client.key"), "tls_ca": str(certs / "ca.pem")}

    hidden = torch.randn(4, 64, generator=torch.Generator().manual_seed(7))
    reference = fixtures.hf_local(deepseek)
    with torch.no_grad():
        want = reference.model.layers[1].mlp(hidden.unsqueeze(0)).squeeze(0)

    with LocalCluster(deepseek, workers=2, token=TOKEN, log_dir=str(fixtures.WORK / "logs" / "tls"),
                      tls_cert=str(certs / "node.pem"), tls_key=str(certs / "node.key"),
                      tls_ca=str(certs / "ca.pem")) as local:
        with moe_cluster.Cluster(local.address, token_file=str(token_file), wire_dtype="f32", **client) as cluster:
            got = cluster.forward(1, hidden)
            err = fixtures.relative(got, want)
            c.check(got.shape == hidden.shape and err < 1e-4,
                    f"TLS + token file: forward matches HF's MoE block (relative error {err:.2e})")

        # The same from the environment alone, as moectl reads it.
        saved = {k: os.environ.get(k) for k in ("MOE_TLS_CERT", "MOE_TLS_KEY", "MOE_TLS_CA", "MOE_CLUSTER_TOKEN_FILE")}
        os.environ.update({"MOE_TLS_CERT": client["tls_cert"], "MOE_TLS_KEY": client["tls_key"],
                           "MOE_TLS_CA": client["tls_ca"], "MOE_CLUSTER_TOKEN_FILE": str(token_file)})
        try:
            with moe_cluster.Cluster(local.address, wire_dtype="f32") as cluster:
                c.check(torch.equal(cluster.forward(1, hidden), got), "MOE_TLS_* + MOE_CLUSTER_TOKEN_FILE: same output")
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

        expect(c, "client certificate from another CA", moe_cluster.TlsRefused,
               lambda: moe_cluster.Cluster(local.address, token_file=str(token_file), deadline_ms=3000,
                                           tls_cert=str(other / "client.pem"), tls_key=str(other / "client.key"),
                                           tls_ca=client["tls_ca"]), "TLS refused", "unknown ca")
        expect(c, "trusting another CA (the cluster's certificate is not from it)", moe_cluster.TlsRefused,
               lambda: moe_cluster.Cluster(local.address, token_file=str(token_file), deadline_ms=3000,
                                           tls_cert=client["tls_cert"], tls_key=client["tls_key"],
                                           tls_ca=str(other / "ca.pem")), "TLS handshake")
        expect(c, "no TLS at all", moe_cluster.Unreachable,
               lambda: moe_cluster.Cluster(local.address, token_file=str(token_file), deadline_ms=3000))
        expect(c, "a certificate without its key", moe_cluster.InvalidArgument,
               lambda: moe_cluster.Cluster(local.address, token=TOKEN, tls_cert=client["tls_cert"],
                                           tls_ca=client["tls_ca"]), "tls_key")
        expect(c, "a missing token file", moe_cluster.InvalidArgument,
               lambda: moe_cluster.Cluster(local.address, token_file=str(token_file) + ".missing", **client),
               ".missing")
    return c.finish()


if __name__ == "__main__":
    fixtures.run_main(main)
