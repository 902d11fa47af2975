"""LocalCluster: a loopback cluster of real processes (one moe-coordinator, N moe-worker) serving a
checkpoint, for serve-demo, the benchmark and the tests. The daemons come from MOE_BIN_DIR, the
package's bin/ (pip install) or the build tree's bin/ next to build/python/."""

from __future__ import annotations

import os
import pathlib
import tempfile
import sys
import shutil

from moe_cluster import _native
from moe_cluster.errors import ClusterError


def find_bin_dir(bin_dir: str | None = None) -> str:
    here = pathlib.Path(__file__).resolve().parent
    candidates = [bin_dir, os.environ.get("MOE_BIN_DIR"), here / "bin", here.parent.parent / "bin"]
    for c in candidates:
        if c and (pathlib.Path(c) / "moe-coordinator").is_file() and (pathlib.Path(c) / "moe-worker").is_file():
            return str(c)
    tried = ", ".join(str(c) for c in candidates if c)
    raise ClusterError(f"moe-coordinator and moe-worker not found (looked in {tried}); set MOE_BIN_DIR "
                       f"to the folder holding them (build/bin of a CMake build)")


class LocalCluster:
    """Starts the daemons at once and waits until every worker serves (placement epoch >= 1). The
    processes die with the thread that started them; stop() (or leaving a `with`) ends them. tls_cert,
    tls_key, tls_ca: mutual TLS between every daemon (all three, or none)."""

    def __init__(self, model_dir, *, workers: int = 3, replicas: int = 1, token: str | None = None,
                 lease_ms: int = 1500, worker_threads: int = 1, bin_dir: str | None = None,
                 log_dir: str | None = None, ready_timeout_ms: int = 60000, tls_cert: str | None = None,
                 tls_key: str | None = None, tls_ca: str | None = None):
        self._own_log_dir = log_dir is None  # a folder made here is removed by a clean stop()
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="moe-cluster-logs-")
        self._native = _native.NativeLocalCluster(find_bin_dir(bin_dir), f"hf:{os.path.abspath(model_dir)}",
                                                  workers, replicas, self.log_dir, token or "", lease_ms,
                                                  worker_threads, str(tls_cert or ""), str(tls_key or ""),
                                                  str(tls_ca or ""))
        try:
            self.epoch = self._native.wait_ready(ready_timeout_ms)
        except Exception:
            self._native.stop()
            print(f"moe_cluster: the cluster did not get ready; logs kept in {self.log_dir}", file=sys.stderr)
            raise
        self.address = self._native.address

    @property
    def worker_count(self) -> int:
        return self._native.worker_count

    def worker_pid(self, i: int) -> int:
        return self._native.worker_pid(i)

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker i (and reap it)."""
        self._native.kill_worker(i)

    def stop(self, keep_logs: bool = False) -> None:
        self._native.stop()
        if self._own_log_dir and not keep_logs:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.stop(keep_logs=exc_type is not None)  # an error keeps the logs for reading
        if exc_type is not None and self._own_log_dir:
            print(f"moe_cluster: logs kept in {self.log_dir}", file=sys.stderr)
