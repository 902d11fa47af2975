"""Shared pieces of the moe_cluster Python tests (tests/python/): the test checkpoints completed into
whole models, prompts, the HF reference, and a small check recorder (one line per check, a summary,
and a non-zero exit when anything failed).

The checkpoints in testdata/hf_moe hold embeddings, norms, routers and experts but no attention and no
lm_head. completed() makes a whole model of each with moe_cluster.checkpoint.complete_checkpoint
(transformers' from_pretrained under a fixed seed, then save_pretrained in f32), which both the cluster
(coordinator --model DIR) and HF load.
"""

from __future__ import annotations

import json
import os
import pathlib
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402

from moe_cluster.checkpoint import complete_checkpoint  # noqa: E402

TESTDATA = pathlib.Path(os.environ.get("MOE_TESTDATA_DIR", pathlib.Path(__file__).resolve().parents[2] / "../shared/testdata"))
HF_MOE = TESTDATA / "hf_moe"
WORK = pathlib.Path(os.environ.get("MOE_TEST_WORK_DIR", "/tmp/moe-python-tests"))
SEED = 1234
NEW_TOKENS = 16
# Three prompts of different lengths (left padding + attention mask), ids in every test vocab (128).
PROMPTS = [[5, 17, 33, 9, 100, 64, 2, 77, 18, 41], [12, 90, 3, 45, 66, 7], [120, 8, 31]]


def families() -> list[str]:
    found = sorted(p.name for p in HF_MOE.iterdir() if (p / "config.json").exists())
    if not found:
        raise SystemExit(f"no checkpoints under {HF_MOE}")
    return found


def completed(name: str) -> pathlib.Path:
    """testdata/hf_moe/<name> completed into a whole f32 model under WORK (made once per work dir)."""
    out = WORK / "completed" / name
    if not (out / "config.json").exists():
        complete_checkpoint(HF_MOE / name, out, seed=SEED)
    return out


def hf_local(model_dir) -> torch.nn.Module:
    return transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()


def stored_tensors(model_dir) -> dict[str, tuple[tuple[int, ...], int]]:
    """name -> (shape, bytes) of every tensor in the checkpoint folder."""
    folder = pathlib.Path(model_dir)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    out = {}
    for f in files:
        with safe_open(str(folder / f), "pt") as s:
            for k in s.keys():
                t = s.get_slice(k)
                shape = tuple(t.get_shape())
                n = 1
                for d in shape:
                    n *= d
                out[k] = (shape, n * {"F32": 4, "BF16": 2, "F16": 2}[t.get_dtype()])
    return out


def is_routed_expert(name: str) -> bool:
    return ".experts." in name


class Checks:
    def __init__(self, title: str):
        self.title = title
        self.failed: list[str] = []
        self.count = 0

    def check(self, ok: bool, what: str) -> bool:
        self.count += 1
        print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
        if not ok:
            self.failed.append(what)
        return ok

    def info(self, what: str) -> None:
        print(f"info {what}", flush=True)

    def finish(self) -> int:
        print(f"{self.title}: {self.count - len(self.failed)}/{self.count} checks passed", flush=True)
        for f in self.failed:
            print(f"  failed: {f}", flush=True)
        return 1 if self.failed or self.count == 0 else 0


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|"""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def run_main(fn) -> None:
    try:
        code = fn()
    except Exception:
        import traceback
        traceback.print_exc()
        code = 1
    sys.exit(code)
