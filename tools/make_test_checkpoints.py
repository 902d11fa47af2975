#!/usr/bin/env python3
"""Builds the tiny test checkpoints of tests/data/hf_moe_families/ with HF transformers itself.

For every family: a random model made by transformers from a tiny config, saved with save_pretrained
(so tensor names and layouts are the ones transformers writes and reads: the released checkpoints'),
in F32 and in BF16; plus the quantized variants the real releases ship: deepseek_v3 with FP8 block
quantization (F8_E4M3 weights + weight_scale_inv, blocks that do not divide the dimensions) and gpt_oss
with MXFP4 expert weights (*_blocks + *_scales). cases.safetensors beside each holds inputs and the
outputs of HF's own MoE block of every MoE layer (T=1 "one" and T=37 "batch"), computed in float64 from
the stored weights (BF16 widened exactly; quantized weights dequantized exactly).

Usage: PYTHON tools/make_test_checkpoints.py [OUT_DIR]   (default tests/data/hf_moe_families)
Needs the project venv (ops/setup-python-env.sh): torch, transformers 5.24, safetensors.
"""
import json
import math
import os
import shutil
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM

H = 32
COMMON = dict(hidden_size=H, num_attention_heads=2, num_key_value_heads=2, vocab_size=64, head_dim=16,
              max_position_embeddings=64, tie_word_embeddings=False)

# family -> (config kwargs, MoE block attribute of a decoder layer)
FAMILIES = {
    "olmoe": (dict(num_hidden_layers=2, num_experts=8, num_experts_per_tok=3, intermediate_size=24,
                   norm_topk_prob=False), "mlp"),
    "deepseek_v32": (dict(num_hidden_layers=3, n_routed_experts=8, num_experts_per_tok=3, moe_intermediate_size=16,
                          intermediate_size=24, n_group=4, topk_group=2, first_k_dense_replace=1,
                          n_shared_experts=1, routed_scaling_factor=2.5, kv_lora_rank=8, q_lora_rank=8,
                          qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, index_head_dim=8,
                          index_n_heads=2, index_topk=4), "mlp"),
    "qwen3_next": (dict(num_hidden_layers=3, num_experts=8, num_experts_per_tok=3, moe_intermediate_size=16,
                        shared_expert_intermediate_size=24, intermediate_size=24, norm_topk_prob=True,
                        mlp_only_layers=[1], layer_types=["linear_attention", "full_attention", "full_attention"],
                        linear_num_value_heads=2, linear_num_key_heads=2, linear_key_head_dim=8,
                        linear_value_head_dim=8), "mlp"),
    "glm4_moe": (dict(num_hidden_layers=3, n_routed_experts=8, num_experts_per_tok=3, moe_intermediate_size=16,
                      intermediate_size=24, n_group=2, topk_group=1, first_k_dense_replace=1, n_shared_experts=1,
                      routed_scaling_factor=1.5, norm_topk_prob=True), "mlp"),
    "gpt_oss": (dict(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, intermediate_size=16,
                     swiglu_limit=1.5, layer_types=["sliding_attention", "full_attention"], sliding_window=8), "mlp"),
    "llama4_text": (dict(num_hidden_layers=3, num_local_experts=4, num_experts_per_tok=1, intermediate_size=16,
                         intermediate_size_mlp=24, moe_layers=[0, 2], no_rope_layers=[1, 1, 1]), "feed_forward"),
    "ernie4_5_moe": (dict(num_hidden_layers=4, moe_num_experts=8, moe_k=3, moe_intermediate_size=16,
                          intermediate_size=24, moe_layer_start_index=1, moe_layer_end_index=3,
                          moe_layer_interval=1, moe_num_shared_experts=1, moe_norm_min=1e-12), "mlp"),
    "minimax_m2": (dict(num_hidden_layers=2, num_local_experts=8, num_experts_per_tok=3, intermediate_size=16),
                   "mlp"),  # saved as block_sparse_moe.* (the release names)
}
# The quantized variants: deepseek_v3 FP8 (dims not multiples of the 16x16 block), gpt_oss MXFP4.
DEEPSEEK_V3_FP8 = dict(hidden_size=40, num_hidden_layers=2, n_routed_experts=8, num_experts_per_tok=3,
                       moe_intermediate_size=24, intermediate_size=24, n_group=4, topk_group=2,
                       first_k_dense_replace=1, n_shared_experts=1, routed_scaling_factor=2.5, kv_lora_rank=8,
                       q_lora_rank=8, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, num_attention_heads=2,
                       num_key_value_heads=2, head_dim=8, vocab_size=64, max_position_embeddings=64)
FP8_BLOCK = [16, 16]
GPT_OSS_MXFP4 = dict(hidden_size=64, num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                     intermediate_size=32, swiglu_limit=1.5, num_attention_heads=2, num_key_value_heads=2,
                     head_dim=32, vocab_size=64, max_position_embeddings=64, sliding_window=8,
                     layer_types=["sliding_attention", "full_attention"])


def randomize(model, seed):
    """Weights large enough that routing and the expert math matter (HF's init std 0.02 is near zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                fan_in = p.shape[-1] if "gate_up_proj" not in name and "experts.down_proj" not in name else p.shape[-2]
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if "norm" in name else 0.0))
        for name, b in model.named_buffers():
            if "e_score_correction_bias" in name:
                b.copy_(torch.randn(b.shape, generator=g) * 0.05)


def moe_layers(model, attr):
    out = []
    for i, layer in enumerate(model.model.layers):
        block = getattr(layer, attr)
        if hasattr(block, "experts"):  # dense MLPs (e.g. Glm4MoeMLP) have none
            out.append((i, block))
    return out


def block_output(block, x):
    y = block(x.unsqueeze(0))
    if isinstance(y, tuple):
        y = y[0]
    return y.reshape(x.shape)


def write_cases(model, attr, out_dir, seed):
    model = model.to(torch.float64).eval()
    g = torch.Generator().manual_seed(seed)
    hidden = model.config.hidden_size
    tensors = {}
    layers = moe_layers(model, attr)
    assert layers, f"no MoE layers found in {out_dir}"
    with torch.no_grad():
        for layer, block in layers:
            for tag, t in (("one", 1), ("batch", 37)):
                # f32 values, so the engine's f32 input is exactly what the float64 reference ran on
                x = torch.randn(t, hidden, generator=g, dtype=torch.float32).to(torch.float64)
                y = block_output(block, x)
                tensors[f"model.layers.{layer}.mlp.{tag}.input"] = x.to(torch.float32).contiguous()
                tensors[f"model.layers.{layer}.mlp.{tag}.output"] = y.to(torch.float32).contiguous()
    save_file(tensors, os.path.join(out_dir, "cases.safetensors"))
    return [l for l, _ in layers]


def make_model(family, kwargs, seed):
    cfg = AutoConfig.for_model(family, **kwargs)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg)
    randomize(model, seed)
    return model


def save(model, out_dir, dtype):
    if os.path.exists(out_dir):
        shutil.rmtree(out_dir)
    model.to(dtype).save_pretrained(out_dir)
    for extra in ("generation_config.json",):
        p = os.path.join(out_dir, extra)
        if os.path.exists(p):
            os.remove(p)


def reload(family_dir):
    return AutoModelForCausalLM.from_pretrained(family_dir, dtype=torch.float64, experts_implementation="eager")


# ---------------------------------------------------------------- FP8 block quantization (DeepSeek-V3)
def fp8_quantize(w, block):
    """w [R, C] -> (F8_E4M3 [R, C], scale_inv [ceil(R/b0), ceil(C/b1)] F32), as DeepSeek-V3 ships it."""
    r, c = w.shape
    b0, b1 = block
    sr, sc = -(-r // b0), -(-c // b1)
    scale = torch.empty(sr, sc, dtype=torch.float32)
    q = torch.empty(r, c, dtype=torch.float8_e4m3fn)
    w = w.to(torch.float32)
    for i in range(sr):
        for j in range(sc):
            tile = w[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1]
            s = tile.abs().max().clamp(min=1e-12) / 448.0
            scale[i, j] = s
            q[i * b0:(i + 1) * b0, j * b1:(j + 1) * b1] = (tile / s).to(torch.float8_e4m3fn)
    return q, scale


def fp8_dequantize(q, scale, block):
    r, c = q.shape
    b0, b1 = block
    full = scale.repeat_interleave(b0, 0)[:r].repeat_interleave(b1, 1)[:, :c]
    return q.to(torch.float32) * full


def make_fp8_deepseek(out_root):
    out_dir = os.path.join(out_root, "deepseek_v3_fp8")
    model = make_model("deepseek_v3", DEEPSEEK_V3_FP8, 1301)
    save(model, out_dir, torch.bfloat16)
    path = os.path.join(out_dir, "model.safetensors")
    tensors = load_file(path)
    quantized, dequantized = {}, {}
    for name, t in tensors.items():
        is_mlp_weight = ".mlp." in name and name.endswith("_proj.weight") and t.dim() == 2
        if is_mlp_weight:
            q, s = fp8_quantize(t, FP8_BLOCK)
            quantized[name] = q
            quantized[name + "_scale_inv"] = s
            dequantized[name] = fp8_dequantize(q, s, FP8_BLOCK)
        else:
            quantized[name] = t
    save_file(quantized, path, metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    cfg["quantization_config"] = {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                                  "weight_block_size": FP8_BLOCK}
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    # Reference: the bf16 model with its MLP weights replaced by the dequantized values.
    ref = reload_without_quant(out_dir, tensors, dequantized)
    return write_cases(ref, "mlp", out_dir, 2301)


def reload_without_quant(out_dir, original, replaced):
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    cfg.pop("quantization_config", None)
    tmp = out_dir + ".reference"
    os.makedirs(tmp, exist_ok=True)
    json.dump(cfg, open(os.path.join(tmp, "config.json"), "w"))
    state = {k: (replaced[k] if k in replaced else v).to(torch.float32) for k, v in original.items()}
    save_file(state, os.path.join(tmp, "model.safetensors"), metadata={"format": "pt"})
    model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float64, experts_implementation="eager")
    shutil.rmtree(tmp)
    return model


# ---------------------------------------------------------------- MXFP4 (gpt-oss)
FP4_VALUES = torch.tensor([+0.0, +0.5, +1.0, +1.5, +2.0, +3.0, +4.0, +6.0,
                           -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0])


def mxfp4_quantize(w):
    """w [..., rows, cols] (cols % 32 == 0) -> blocks U8 [..., rows, cols/32, 16], scales U8 [..., rows, cols/32]."""
    w = w.to(torch.float32)
    groups = w.reshape(*w.shape[:-1], w.shape[-1] // 32, 32)
    amax = groups.abs().amax(-1).clamp(min=2.0 ** -100)
    exp = torch.ceil(torch.log2(amax / 6.0)).clamp(-127, 127)
    scaled = groups / torch.pow(2.0, exp).unsqueeze(-1)
    idx = (scaled.unsqueeze(-1) - FP4_VALUES).abs().argmin(-1).to(torch.uint8)  # nearest e2m1
    blocks = (idx[..., 0::2] | (idx[..., 1::2] << 4)).to(torch.uint8)
    scales = (exp + 127).to(torch.uint8)
    return blocks.contiguous(), scales.contiguous()


def mxfp4_dequantize(blocks, scales):
    lo, hi = FP4_VALUES[(blocks & 0xF).long()], FP4_VALUES[(blocks >> 4).long()]
    vals = torch.stack([lo, hi], -1).reshape(*blocks.shape[:-1], 32)
    vals = vals * torch.pow(2.0, scales.to(torch.float32) - 127).unsqueeze(-1)
    return vals.reshape(*blocks.shape[:-2], blocks.shape[-2] * 32)


def make_mxfp4_gpt_oss(out_root):
    out_dir = os.path.join(out_root, "gpt_oss_mxfp4")
    model = make_model("gpt_oss", GPT_OSS_MXFP4, 1401)
    save(model, out_dir, torch.bfloat16)
    path = os.path.join(out_dir, "model.safetensors")
    tensors = load_file(path)
    quantized, dequantized = {}, {}
    for name, t in tensors.items():
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            # the release stores [E, out, in] (Linear layout) in blocks of 32 along `in`
            blocks, scales = mxfp4_quantize(t.transpose(1, 2))
            quantized[name + "_blocks"] = blocks
            quantized[name + "_scales"] = scales
            dequantized[name] = mxfp4_dequantize(blocks, scales).transpose(1, 2).contiguous()
        else:
            quantized[name] = t
    save_file(quantized, path, metadata={"format": "pt"})
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    cfg["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": [
        "model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}
    json.dump(cfg, open(os.path.join(out_dir, "config.json"), "w"), indent=2)
    ref = reload_without_quant(out_dir, tensors, dequantized)
    return write_cases(ref, "mlp", out_dir, 2401)


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                                   "hf_moe_families")
    os.makedirs(out_root, exist_ok=True)
    only = set(os.environ.get("ONLY", "").split(",")) - {""}
    summary = {}
    for n, (family, (kwargs, attr)) in enumerate(FAMILIES.items()):
        if only and family not in only:
            continue
        for dtype, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
            seed = 1000 + 10 * n + (0 if tag == "f32" else 1)
            out_dir = os.path.join(out_root, f"{family}_{tag}")
            model = make_model(family, dict(COMMON, **kwargs), seed)
            save(model, out_dir, dtype)
            summary[f"{family}_{tag}"] = write_cases(reload(out_dir), attr, out_dir, seed + 5000)
    if not only or "deepseek_v3_fp8" in only:
        summary["deepseek_v3_fp8"] = make_fp8_deepseek(out_root)
    if not only or "gpt_oss_mxfp4" in only:
        summary["gpt_oss_mxfp4"] = make_mxfp4_gpt_oss(out_root)
    for name, layers in summary.items():
        print(f"{name}: MoE layers {layers}")


if __name__ == "__main__":
    main()
