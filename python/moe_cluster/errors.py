"""The exceptions moe_cluster raises. Every error from the C++ client arrives as one of these, with the
C++ message (what failed, with which values)."""


class ClusterError(RuntimeError):
    """Base class: the cluster could not answer (or refused) a request."""


class Unreachable(ClusterError, ConnectionError):
    """The coordinator (or a worker) could not be reached within the deadline."""


class TlsRefused(Unreachable):
    """The TLS handshake failed: the peer's certificate is not from our CA, or ours not from its CA
    (tls_ca / MOE_TLS_CA), or one side speaks TLS and the other does not."""


class Unavailable(ClusterError):
    """Experts the call needs have no replica on the cluster (it lacks the capacity, or lost them)."""


class Unauthorized(ClusterError, PermissionError):
    """The cluster refused the request: missing or wrong cluster token."""


class DeadlineExceeded(ClusterError, TimeoutError):
    """A call did not complete within its deadline (retries included)."""


class ModelMismatch(ClusterError, ValueError):
    """The cluster serves another model than the host's (family, shapes or router weights differ)."""


class NotMoeLayer(ClusterError, ValueError):
    """forward() was given a layer that is not an MoE layer of the served model."""


class InvalidArgument(ClusterError, ValueError):
    """A bad argument: wrong tensor device or dtype, wrong hidden size, bad address or option."""


__all__ = ["ClusterError", "Unreachable", "TlsRefused", "Unavailable", "Unauthorized", "DeadlineExceeded", "ModelMismatch", "NotMoeLayer",
           "InvalidArgument"]
