"""Completing a checkpoint that lacks tensors HF needs (the test checkpoints hold only embeddings, norms,
routers and experts): transformers' own from_pretrained reads what is there (per-expert tensors into its
fused experts included) and initialises the rest under a fixed torch seed, so the result is the same on
every run; save_pretrained writes it back in the checkpoint layout (per-expert tensors) that both the
cluster and HF read."""

from __future__ import annotations

import logging
import pathlib

import torch
import transformers


def complete_checkpoint(model_dir, out_dir, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> list[str]:
    """Writes the completed model of `model_dir` to `out_dir` in `dtype`; returns the names of the tensors
    that were missing from the checkpoint (initialised from `seed`).

    DeepSeek-V3's attention (MLA) has as many key/value heads as query heads; a config that says
    otherwise (the test checkpoint's num_key_value_heads 2 with 4 heads) makes transformers' attention
    fail on shapes, so the completed config sets num_key_value_heads = num_attention_heads. Only
    attention reads that key."""
    config = transformers.AutoConfig.from_pretrained(model_dir)
    if config.model_type == "deepseek_v3" and config.num_key_value_heads != config.num_attention_heads:
        config.num_key_value_heads = config.num_attention_heads
    loading_logger = logging.getLogger("transformers.modeling_utils")
    level = loading_logger.level
    loading_logger.setLevel(logging.ERROR)
    try:
        torch.manual_seed(seed)
        model, info = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, config=config, dtype=dtype, output_loading_info=True)
    finally:
        loading_logger.setLevel(level)
    if info.get("unexpected_keys"):
        raise RuntimeError(f"{model_dir}: transformers did not use {sorted(info['unexpected_keys'])[:5]}")
    pathlib.Path(out_dir).mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    return sorted(info.get("missing_keys", []))
