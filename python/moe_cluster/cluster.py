"""Cluster: a connection to a moe-cluster coordinator that runs MoE layers' forward on the workers.

forward() takes a CPU torch.Tensor (float32, bfloat16, float16) or a numpy array (float32, float16) of
any leading shape ending in the model's hidden size and returns the same type, shape and dtype. The GIL
is released while the call converts and waits, so other Python threads (a second micro-batch's
attention, say) run meanwhile; forward_async() returns a concurrent.futures.Future for that use.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from moe_cluster import _native
from moe_cluster.errors import InvalidArgument

_TORCH_DTYPES = {"float32": "f32", "bfloat16": "bf16", "float16": "f16"}
_NUMPY_DTYPES = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr") and hasattr(x, "device")


def _check_address(address: str, what: str) -> None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"{what} must be HOST:PORT, got {address!r}")


def _tls_files(tls_cert: str | None, tls_key: str | None, tls_ca: str | None) -> tuple[str, str, str]:
    """The TLS files given, else MOE_TLS_CERT / MOE_TLS_KEY / MOE_TLS_CA (as moectl reads them); MOE_TLS=off
    turns TLS off when nothing was given explicitly."""
    given = (tls_cert, tls_key, tls_ca)
    if any(given):
        return tuple(str(f) if f else "" for f in given)
    if os.environ.get("MOE_TLS", "auto") == "off":
        return "", "", ""
    files = tuple(os.environ.get(name, "") for name in ("MOE_TLS_CERT", "MOE_TLS_KEY", "MOE_TLS_CA"))
    if os.environ.get("MOE_TLS") == "on" and not all(files):
        raise InvalidArgument("MOE_TLS=on needs MOE_TLS_CERT, MOE_TLS_KEY and MOE_TLS_CA")
    return files


class Cluster:
    """Cluster(address, *, token=None, token_file=None, tls_cert=None, tls_key=None, tls_ca=None,
    wire_dtype="bf16", deadline_ms=None, workers=None).

    address: the coordinator's "host:port" (None: ask only `workers`). workers: workers' "host:port" to
    ask for the model and placement when the coordinator does not answer. token / token_file: the cluster
    token (--cluster-token / --cluster-token-file) when the cluster has one; without either,
    MOE_CLUSTER_TOKEN or MOE_CLUSTER_TOKEN_FILE. tls_cert, tls_key, tls_ca: PEM files for mutual TLS (this
    client's certificate and key, and the cluster CA); without them MOE_TLS_CERT, MOE_TLS_KEY, MOE_TLS_CA
    (MOE_TLS=off ignores those). A peer whose certificate is not from tls_ca raises TlsRefused.
    wire_dtype: "bf16" (half the bytes) or "f32" (bit-exact activations). deadline_ms: bounds the
    connection, the model fetch and each forward call, retries included (default 10000).
    """

    def __init__(self, address: str | None, *, token: str | None = None, token_file: str | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, tls_ca: str | None = None,
                 wire_dtype: str = "bf16", deadline_ms: int | None = None, workers: list[str] | None = None,
                 async_threads: int = 4):
        workers = list(workers or [])
        if address is not None:
            _check_address(address, "the cluster address")
        for w in workers:
            _check_address(w, "a worker address")
        if token is None and token_file is None:
            token = os.environ.get("MOE_CLUSTER_TOKEN") or None
            token_file = None if token else os.environ.get("MOE_CLUSTER_TOKEN_FILE") or None
        cert, key, ca = _tls_files(tls_cert, tls_key, tls_ca)
        self._native = _native.NativeCluster(address or "", workers, token or "", wire_dtype, deadline_ms,
                                             str(token_file or ""), cert, key, ca)
        self.address = self._native.address
        self.wire_dtype = wire_dtype
        self._model = self._native.model()
        self._hidden = int(self._model["hidden_size"])
        self._executor: ThreadPoolExecutor | None = None
        self._async_threads = async_threads
        self._lock = threading.Lock()
        self.forward_calls = 0
        self.forward_seconds = 0.0  # summed wall time of forward calls (async ones included)

    # --- information ---
    def model(self) -> dict:
        """family, name, source (the checkpoint the cluster serves), num_layers, moe_layers, hidden_size,
        num_experts, top_k, the routing options, has_shared_expert and the placement epoch."""
        info = self._native.model()
        return info

    def status(self) -> dict:
        """The coordinator's status: model, epoch, workers (id, name, state, address, backend,
        experts_hosted, lease_remaining_ms) and the per-layer imbalance; plus this client's stats."""
        status = self._native.status()
        status["client"] = self._native.stats()
        return status

    def router_weights(self, layer: int) -> dict:
        """The f32 router weights the cluster routes `layer` with (numpy): gate [E, hidden], and
        correction_bias [E] (deepseek_v3) / shared_gate [hidden] (qwen2_moe with a shared expert)."""
        return self._native.router_weights(layer)

    # --- forward ---
    def forward(self, layer: int, hidden):
        """The MoE layer `layer`'s output (routed + shared experts, no residual) for `hidden`."""
        start = time.perf_counter()
        try:
            if _is_torch_tensor(hidden):
                return self._forward_torch(layer, hidden)
            if isinstance(hidden, np.ndarray):
                return self._forward_numpy(layer, hidden)
            raise InvalidArgument(f"forward takes a torch.Tensor or a numpy.ndarray, got {type(hidden).__name__}")
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self.forward_calls += 1
                self.forward_seconds += elapsed

    def forward_async(self, layer: int, hidden) -> Future:
        """forward() on one of the cluster's threads; the Future holds the result or the exception."""
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self._async_threads,
                                                    thread_name_prefix="moe-cluster")
            executor = self._executor
        return executor.submit(self.forward, layer, hidden)

    def _rows(self, shape) -> int:
        if len(shape) == 0 or shape[-1] != self._hidden:
            raise InvalidArgument(f"hidden states must end in the model's hidden size {self._hidden}, "
                                  f"got shape {tuple(shape)}")
        rows = 1
        for d in shape[:-1]:
            rows *= int(d)
        return rows

    def _forward_torch(self, layer: int, x):
        import torch
        if x.device.type != "cpu":
            raise InvalidArgument(f"forward takes CPU tensors; got one on {x.device} "
                                  f"(move it with .cpu(), or run the host model on the CPU)")
        dtype = _TORCH_DTYPES.get(str(x.dtype).removeprefix("torch."))
        if dtype is None:
            raise InvalidArgument(f"forward takes float32, bfloat16 or float16 tensors, got {x.dtype}")
        rows = self._rows(x.shape)
        x = x.detach().contiguous()
        if dtype == "f32":
            out = self._native.forward(layer, x.data_ptr(), dtype, rows, self._hidden, 0)
            return torch.from_numpy(out).view(x.shape)
        out = torch.empty(x.shape, dtype=x.dtype)
        self._native.forward(layer, x.data_ptr(), dtype, rows, self._hidden, out.data_ptr())
        return out

    def _forward_numpy(self, layer: int, x: np.ndarray):
        dtype = _NUMPY_DTYPES.get(x.dtype)
        if dtype is None:
            raise InvalidArgument(f"forward takes float32 or float16 numpy arrays, got {x.dtype}")
        rows = self._rows(x.shape)
        x = np.ascontiguousarray(x)
        if dtype == "f32":
            out = self._native.forward(layer, x.ctypes.data, dtype, rows, self._hidden, 0)
            return out.reshape(x.shape)
        out = np.empty(x.shape, dtype=x.dtype)
        self._native.forward(layer, x.ctypes.data, dtype, rows, self._hidden, out.ctypes.data)
        return out

    # --- lifetime ---
    def close(self) -> None:
        """Waits for async calls in flight, then closes the connections. Idempotent."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        self._native.close()

    @property
    def closed(self) -> bool:
        return self._native.closed

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self._model
        return (f"Cluster({self.address!r}, {m['family']} {m['num_layers']} layers, MoE {m['moe_layers']}, "
                f"wire {self.wire_dtype})")
