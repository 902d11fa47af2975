"""moe_cluster: run the MoE experts of a model on a moe-cluster, from Python.

    import moe_cluster
    with moe_cluster.Cluster("127.0.0.1:7400", wire_dtype="f32") as cluster:
        print(cluster.model())
        y = cluster.forward(layer, hidden_states)      # torch.Tensor or numpy array, [..., hidden]

moe_cluster.hf plugs a cluster into a Hugging Face transformers model (load_model, attach).
"""

from moe_cluster.cluster import Cluster
from moe_cluster.errors import (ClusterError, DeadlineExceeded, InvalidArgument, ModelMismatch, NotMoeLayer,
                                TlsRefused, Unauthorized, Unavailable, Unreachable)

__all__ = ["Cluster", "ClusterError", "DeadlineExceeded", "InvalidArgument", "ModelMismatch", "NotMoeLayer",
           "TlsRefused", "Unauthorized", "Unavailable", "Unreachable"]
