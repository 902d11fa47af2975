"""Tiny random HF transformers MoE models, one per routing family, saved with save_pretrained.

Each spec builds the model with the family's own HF class, gives its MoE layers weights large
enough that routing has clear margins, casts it to the storage dtype and saves it the way a real
checkpoint is saved (safetensors, optionally sharded). The in-memory model is then widened to
float32, so that running its MoE blocks computes in float32 on exactly the stored values.
"""

from __future__ import annotations

import json
import math
import pathlib
from dataclasses import dataclass, field
from typing import Callable

import torch
import transformers


@dataclass
class TinyModelSpec:
    name: str                    # folder name, also printed in every result line
    family: str                  # mixtral | qwen2_moe | qwen3_moe | deepseek_v3
    make_config: Callable[[], transformers.PretrainedConfig]
    model_class: type
    moe_layers: list[int]        # the layers whose mlp is a sparse MoE block
    dense_layers: list[int]      # the layers whose mlp is a plain MLP
    storage_dtype: torch.dtype
    max_shard_size: str | None = None            # None: one model.safetensors
    correction_bias: Callable[[int, int, torch.Generator], torch.Tensor] | None = None
    seed: int = 0
    notes: list[str] = field(default_factory=list)


def _deepseek_bias(layer: int, experts: int, gen: torch.Generator) -> torch.Tensor:
    """Layer 1: small random biases that change which experts win. Layer 2: the same, shifted far
    below zero, so every s + bias is negative: HF masks dropped groups with -inf, and an engine that
    masks them with 0.0 instead would pick experts from the dropped groups."""
    bias = (torch.rand(experts, generator=gen) - 0.5) * 0.5
    return bias - 1.5 if layer == 2 else bias


def all_specs() -> list[TinyModelSpec]:
    common = dict(vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=128, tie_word_embeddings=False)
    return [
        TinyModelSpec(
            name="mixtral_f32_sharded", family="mixtral", model_class=transformers.MixtralForCausalLM,
            make_config=lambda: transformers.MixtralConfig(
                **common, intermediate_size=96, num_hidden_layers=2, num_local_experts=8,
                num_experts_per_tok=2),
            moe_layers=[0, 1], dense_layers=[], storage_dtype=torch.float32,
            max_shard_size="200KB", seed=11),
        TinyModelSpec(
            name="qwen2_moe_bf16", family="qwen2_moe", model_class=transformers.Qwen2MoeForCausalLM,
            make_config=lambda: transformers.Qwen2MoeConfig(
                **common, intermediate_size=96, moe_intermediate_size=32,
                shared_expert_intermediate_size=80, num_hidden_layers=2, num_experts=12,
                num_experts_per_tok=4, norm_topk_prob=False, decoder_sparse_step=1,
                mlp_only_layers=[]),
            moe_layers=[0, 1], dense_layers=[], storage_dtype=torch.bfloat16, seed=12),
        TinyModelSpec(
            name="qwen3_moe_f32", family="qwen3_moe", model_class=transformers.Qwen3MoeForCausalLM,
            make_config=lambda: transformers.Qwen3MoeConfig(
                **common, head_dim=16, intermediate_size=96, moe_intermediate_size=32,
                num_hidden_layers=3, num_experts=16, num_experts_per_tok=4, norm_topk_prob=True,
                decoder_sparse_step=1, mlp_only_layers=[1]),
            moe_layers=[0, 2], dense_layers=[1], storage_dtype=torch.float32, seed=13),
        TinyModelSpec(
            name="deepseek_v3_bf16_sharded", family="deepseek_v3",
            model_class=transformers.DeepseekV3ForCausalLM,
            make_config=lambda: transformers.DeepseekV3Config(
                vocab_size=128, hidden_size=64, num_attention_heads=4, num_key_value_heads=4,
                max_position_embeddings=128, tie_word_embeddings=False, intermediate_size=96,
                moe_intermediate_size=32, num_hidden_layers=3, n_routed_experts=16,
                num_experts_per_tok=4, n_group=4, topk_group=2, routed_scaling_factor=2.5,
                norm_topk_prob=True, first_k_dense_replace=1, n_shared_experts=2,
                q_lora_rank=32, kv_lora_rank=32, qk_rope_head_dim=8, qk_nope_head_dim=8,
                v_head_dim=16),
            moe_layers=[1, 2], dense_layers=[0], storage_dtype=torch.bfloat16,
            max_shard_size="150KB", correction_bias=_deepseek_bias, seed=14,
            notes=["layer 2: every s + e_score_correction_bias < 0 (dropped groups: -inf, not 0.0)"]),
    ]


def moe_block(model: torch.nn.Module, layer: int) -> torch.nn.Module:
    """The MoE block of a decoder layer: `.mlp` in transformers 5, `.block_sparse_moe` in older Mixtral."""
    decoder_layer = model.model.layers[layer]
    block = getattr(decoder_layer, "block_sparse_moe", None) or decoder_layer.mlp
    if not hasattr(block, "experts") or not hasattr(block, "gate"):
        raise RuntimeError(f"layer {layer} of {type(model).__name__} has no MoE block "
                           f"(its mlp is {type(block).__name__})")
    return block


def _randomize_moe_block(block: torch.nn.Module, hidden: int, gen: torch.Generator) -> None:
    """Expert and shared-expert weights ~ N(0, 1/fan_in); router weights scaled so that logits of a
    unit-variance input have std 2, which keeps the k-th and (k+1)-th choices well apart."""
    with torch.no_grad():
        for name, param in block.named_parameters():
            fan_in = param.shape[-1]
            std = 2.0 / math.sqrt(hidden) if name == "gate.weight" else 1.0 / math.sqrt(fan_in)
            param.copy_(torch.randn(param.shape, generator=gen) * std)


def build_and_save(spec: TinyModelSpec, root: pathlib.Path) -> tuple[torch.nn.Module, pathlib.Path]:
    """Builds the model, saves it under root/spec.name and returns it widened to float32 (eval mode)."""
    gen = torch.Generator().manual_seed(spec.seed)
    torch.manual_seed(spec.seed)
    config = spec.make_config()
    model = spec.model_class(config).eval()
    for layer in spec.dense_layers:
        if hasattr(model.model.layers[layer].mlp, "experts"):
            raise RuntimeError(f"{spec.name}: layer {layer} was meant to be dense but has experts")
    for layer in spec.moe_layers:
        block = moe_block(model, layer)
        _randomize_moe_block(block, config.hidden_size, gen)
        if spec.correction_bias is not None:
            bias = block.gate.e_score_correction_bias
            with torch.no_grad():
                bias.copy_(spec.correction_bias(layer, bias.shape[0], gen))

    model = model.to(spec.storage_dtype)
    folder = root / spec.name
    save_args = {"safe_serialization": True}
    if spec.max_shard_size is not None:
        save_args["max_shard_size"] = spec.max_shard_size
    model.save_pretrained(folder, **save_args)
    _check_saved_layout(spec, folder)
    return model.float().eval(), folder


def _check_saved_layout(spec: TinyModelSpec, folder: pathlib.Path) -> None:
    index = folder / "model.safetensors.index.json"
    if spec.max_shard_size is not None:
        if not index.exists():
            raise RuntimeError(f"{spec.name}: expected a sharded checkpoint, found no {index.name}")
        shards = set(json.loads(index.read_text())["weight_map"].values())
        if len(shards) < 2:
            raise RuntimeError(f"{spec.name}: expected several shards, the index names {sorted(shards)}")
    elif not (folder / "model.safetensors").exists():
        raise RuntimeError(f"{spec.name}: expected one model.safetensors in {folder}")
