"""moe_cluster.hf: Hugging Face transformers models whose routed experts run on a moe-cluster.

load_model(model_dir, cluster, **hf_kwargs) builds the checkpoint's HF model without reading its
expert weights (transformers' own from_pretrained, on a model class whose sparse MoE blocks have no
experts, so the expert tensors are never materialised), and attach(model, cluster) does the same to a
model already built, dropping its experts. Each sparse MoE block becomes a ClusterMoeBlock: it sends the
block's input to the cluster, which routes, runs the routed experts and the shared expert, and returns
the block's output. The host keeps attention, embeddings, norms, the routers (to check that the cluster
serves the same model) and the dense layers.

Both refuse a cluster that serves another model (family, layer count, MoE layers, sizes, experts, top-k,
router weights) with moe_cluster.ModelMismatch, and send one probe token so that a wrong token or an
unreachable worker shows at once (Unauthorized, DeadlineExceeded).
"""

from __future__ import annotations

import logging
from typing import Iterator

import torch
import transformers

from moe_cluster.cluster import Cluster
from moe_cluster.errors import ClusterError, ModelMismatch

FAMILIES = ("mixtral", "qwen2_moe", "qwen3_moe", "deepseek_v3", "deepseek_v32", "glm4_moe", "qwen3_next", "olmoe",
            "minimax_m2", "ernie4_5_moe", "gpt_oss", "llama4_text")
# The decoder layer's attribute holding the MLP / MoE block, by family convention.
_BLOCK_ATTRS = ("mlp", "block_sparse_moe", "feed_forward")
# Families whose MoE block returns (hidden_states, router output) and whose decoder layer unpacks it.
_TUPLE_OUTPUT = ("gpt_oss", "llama4_text")
# Host and cluster router weights may differ by one rounding to bf16/f16 of the same checkpoint values.
ROUTER_TOLERANCE = 1e-2
_DROPPED_SUBMODULES = ("experts", "shared_expert", "shared_experts")


class ClusterMoeBlock(torch.nn.Module):
    """Stands in for an HF sparse MoE block: forward(hidden_states) -> the block's output, computed on
    the cluster (routed experts + shared expert). Keeps the block's router (`gate`) and, for Qwen2-MoE,
    `shared_expert_gate` on the host, only to check them against the cluster's."""

    def __init__(self, layer: int, gate: torch.nn.Module, shared_expert_gate: torch.nn.Module | None = None,
                 router_name: str = "gate", correction_bias: torch.Tensor | None = None, tuple_output: bool = False):
        super().__init__()
        self.layer_index = layer
        setattr(self, router_name, gate)  # gpt_oss, llama4: `router`
        self._router_name = router_name
        if shared_expert_gate is not None:
            self.shared_expert_gate = shared_expert_gate
        if correction_bias is not None:  # minimax_m2 keeps it on the block
            self.e_score_correction_bias = torch.nn.Buffer(correction_bias.detach().clone())
        self._tuple_output = tuple_output
        self._cluster: Cluster | None = None

    @property
    def router_module(self) -> torch.nn.Module:
        return getattr(self, self._router_name)

    def forward(self, hidden_states: torch.Tensor):
        if self._cluster is None:
            raise ClusterError(f"MoE layer {self.layer_index} has no cluster: call moe_cluster.hf.attach(model, cluster)")
        out = self._cluster.forward(self.layer_index, hidden_states)
        return (out, None) if self._tuple_output else out

    def extra_repr(self) -> str:
        return f"layer={self.layer_index}, cluster={self._cluster.address if self._cluster else None}"


def _is_sparse_block(module: torch.nn.Module) -> bool:
    return isinstance(module, ClusterMoeBlock) or (
        hasattr(module, "experts") and (hasattr(module, "gate") or hasattr(module, "router")))


def _router_of(block: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    if isinstance(block, ClusterMoeBlock):
        return block._router_name, block.router_module
    name = "gate" if hasattr(block, "gate") else "router"
    return name, getattr(block, name)


def _host_router(block: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The router tensors of an HF MoE block (or its stand-in) as the cluster names them."""
    _, router = _router_of(block)
    host = {"gate": router.weight}
    bias = getattr(router, "e_score_correction_bias", None)  # deepseek, glm4_moe
    if bias is None and hasattr(router, "moe_statics"):  # ernie4_5_moe: [1, E]
        bias = router.moe_statics.e_score_correction_bias.reshape(-1)
    if bias is None:
        bias = getattr(block, "e_score_correction_bias", None)  # minimax_m2
    if bias is None and getattr(router, "bias", None) is not None:  # gpt_oss: the logit bias
        bias = router.bias
    if bias is not None:
        host["correction_bias"] = bias
    if getattr(block, "shared_expert_gate", None) is not None:
        host["shared_gate"] = block.shared_expert_gate.weight.reshape(-1)
    return host


def moe_blocks(model: torch.nn.Module) -> Iterator[tuple[int, torch.nn.Module, torch.nn.Module]]:
    """(layer index, decoder layer, its sparse MoE block) for every MoE layer of an HF causal LM."""
    for index, decoder_layer in enumerate(_decoder_layers(model)):
        for attr in _BLOCK_ATTRS:
            block = getattr(decoder_layer, attr, None)
            if block is not None and _is_sparse_block(block):
                yield index, decoder_layer, block
                break


def _decoder_layers(model: torch.nn.Module):
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if layers is None:
        raise ModelMismatch(f"{type(model).__name__} has no .model.layers: not a decoder-only HF model")
    return layers


def _replace_blocks(model: torch.nn.Module) -> list[ClusterMoeBlock]:
    replaced = []
    tuple_output = getattr(model.config, "model_type", None) in _TUPLE_OUTPUT
    for index, decoder_layer, block in list(moe_blocks(model)):
        if not isinstance(block, ClusterMoeBlock):
            router_name, router = _router_of(block)
            new = ClusterMoeBlock(index, router, getattr(block, "shared_expert_gate", None), router_name=router_name,
                                  correction_bias=getattr(block, "e_score_correction_bias", None),
                                  tuple_output=tuple_output)
            name = next(a for a in _BLOCK_ATTRS if getattr(decoder_layer, a, None) is block)
            setattr(decoder_layer, name, new)
            block = new
        replaced.append(block)
    return replaced


def _causal_lm_class(config) -> type:
    mapping = transformers.AutoModelForCausalLM._model_mapping
    try:
        return mapping[type(config)]
    except KeyError as e:
        raise ModelMismatch(f"transformers has no causal LM class for model_type {config.model_type!r}") from e


def _expertless_class(base: type) -> type:
    """A subclass of the HF model class whose sparse MoE blocks are ClusterMoeBlocks from the start, so
    that from_pretrained finds no parameter for the expert tensors and never reads them."""

    def __init__(self, config, *args, **kwargs):
        base.__init__(self, config, *args, **kwargs)
        _replace_blocks(self)

    ignore = list(getattr(base, "_keys_to_ignore_on_load_unexpected", None) or [])
    ignore += [r"\.experts\.", r"\.shared_experts?\."]
    return type(base.__name__, (base,), {"__init__": __init__, "_keys_to_ignore_on_load_unexpected": ignore,
                                         "__module__": base.__module__, "__qualname__": base.__qualname__})


def load_model(model_dir, cluster: Cluster, **hf_kwargs) -> torch.nn.Module:
    """The HF causal LM of `model_dir` with its MoE blocks on `cluster` (see the module's doc).
    hf_kwargs go to from_pretrained (dtype=torch.float32, ...). Raises ModelMismatch when the cluster
    serves another model."""
    config = transformers.AutoConfig.from_pretrained(model_dir)
    family = cluster.model()["family"]
    if config.model_type != family:
        raise ModelMismatch(f"{model_dir} is a {config.model_type} model but the cluster at {cluster.address} "
                            f"serves a {family} model ({cluster.model()['source']})")
    cls = _expertless_class(_causal_lm_class(config))
    loading_logger = logging.getLogger("transformers.modeling_utils")
    level = loading_logger.level
    loading_logger.setLevel(logging.ERROR)  # the skipped expert tensors are reported as unexpected keys
    try:
        model = cls.from_pretrained(model_dir, **hf_kwargs)
    finally:
        loading_logger.setLevel(level)
    return attach(model, cluster)


def attach(model: torch.nn.Module, cluster: Cluster) -> torch.nn.Module:
    """Replaces every sparse MoE block of `model` (dropping its experts and shared experts) with a
    ClusterMoeBlock calling `cluster`, after checking that the cluster serves this model. Returns model."""
    verify(model, cluster)
    blocks = _replace_blocks(model)
    for block in blocks:
        block._cluster = cluster
    _probe(model, cluster, blocks[0].layer_index)
    return model


def _host_moe_layers(model) -> list[int]:
    return [index for index, _, _ in moe_blocks(model)]


def verify(model: torch.nn.Module, cluster: Cluster) -> None:
    """Raises ModelMismatch naming the first difference between the host model and the cluster's."""
    info = cluster.model()
    config = model.config
    where = f"the cluster at {cluster.address} serves {info['source']}"
    if config.model_type not in FAMILIES:
        raise ModelMismatch(f"model_type {config.model_type!r} is not served by moe-cluster (families: {FAMILIES})")
    checks = [
        ("family", config.model_type, info["family"]),
        ("hidden size", config.hidden_size, info["hidden_size"]),
        ("layer count", config.num_hidden_layers, info["num_layers"]),
        ("MoE layers", _host_moe_layers(model), list(info["moe_layers"])),
        ("experts per token (top-k)", config.num_experts_per_tok, info["top_k"]),
    ]
    for what, host, served in checks:
        if host != served:
            raise ModelMismatch(f"{what} differs: host model {host}, cluster {served} ({where})")
    for index, _, block in moe_blocks(model):
        served = cluster.router_weights(index)
        host = _host_router(block)
        if set(host) != set(served):
            raise ModelMismatch(f"layer {index}: host router has {sorted(host)}, cluster's has {sorted(served)} "
                                f"({where})")
        for name, tensor in host.items():
            _compare_router(index, name, tensor, served[name], where)


def _compare_router(layer: int, name: str, host: torch.Tensor, served, where: str) -> None:
    served = torch.from_numpy(served)
    host = host.detach().to("cpu", torch.float32)
    if tuple(host.shape) != tuple(served.shape):
        raise ModelMismatch(f"layer {layer} router {name}: host shape {tuple(host.shape)}, cluster "
                            f"{tuple(served.shape)} ({where})")
    scale = max(served.abs().max().item(), 1e-30)
    diff = (host - served).abs().max().item()
    if not diff <= ROUTER_TOLERANCE * scale:
        raise ModelMismatch(f"layer {layer} router {name} differs from the cluster's: max |host - cluster| = "
                            f"{diff:.3g} with max |cluster| = {scale:.3g} (tolerance {ROUTER_TOLERANCE} relative); "
                            f"{where}")


def _probe(model, cluster: Cluster, layer: int) -> None:
    dtype = next(model.parameters()).dtype
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        dtype = torch.float32
    cluster.forward(layer, torch.zeros(1, model.config.hidden_size, dtype=dtype))


def parameter_bytes(model: torch.nn.Module) -> int:
    """Bytes of the parameters resident in `model` (what the host holds)."""
    return sum(p.numel() * p.element_size() for p in model.parameters())
