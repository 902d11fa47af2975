"""The commands of `python -m moe_cluster`.

generate    greedy generation with an HF model whose experts run on a cluster; prints the new tokens,
            tokens/s and the share of time spent waiting on the cluster.
serve-demo  starts a loopback cluster (coordinator + workers) on a checkpoint and runs generate (or,
            with --bench, the benchmark) against it, then stops it; with --serve-only it keeps serving
            until Ctrl-C, for `generate --cluster` from another shell. A checkpoint that lacks tensors HF
            needs (attention, lm_head: the test checkpoints) is first completed under a fixed seed.
bench       decode tokens/s at batch 1, 8, 32 for HF with every expert local (the peer, same run), the
            cluster with 1 micro-batch and with 2 in flight; host parameter bytes with and without experts.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _env(name: str, default=None):
    return os.environ.get(f"MOE_{name}", default)


def _prompts(args, model_dir: str) -> list[list[int]]:
    if args.prompt_ids:
        try:
            ids = [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        except ValueError:
            raise SystemExit(f"--prompt-ids must be comma-separated integers, got {args.prompt_ids!r}")
    else:
        import transformers
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir)
        except Exception as e:
            raise SystemExit(f"--prompt needs a tokenizer in {model_dir}: loading one failed with "
                             f"{type(e).__name__}; use --prompt-ids 1,2,3")
        ids = tokenizer(args.prompt)["input_ids"]
    if not ids:
        raise SystemExit("the prompt is empty")
    # A batch of B prompts: the prompt, then rows with the last i tokens dropped (different lengths,
    # so padding is exercised), never shorter than one token.
    return [ids[: max(1, len(ids) - i)] for i in range(args.batch)]


def _connect(args):
    import moe_cluster
    return moe_cluster.Cluster(args.cluster, token=args.token, wire_dtype=args.wire_dtype,
                               deadline_ms=args.deadline_ms)


def _run_generate(model_dir: str, address: str, args) -> int:
    import torch
    from moe_cluster import generate as gen
    from moe_cluster import hf
    args.cluster = address
    prompts = _prompts(args, model_dir)
    with _connect(args) as cluster:
        model = hf.load_model(model_dir, cluster, dtype=getattr(torch, args.dtype))
        ids, mask = gen.pad_prompts(prompts)
        result = gen.generate(model, ids, mask, args.max_new_tokens, micro_batches=args.micro_batches,
                              cluster=cluster)
        for row, tokens in enumerate(result.new_tokens.tolist()):
            print(f"row {row}: prompt {prompts[row]} -> {tokens}")
        print(f"{result.new_tokens.numel()} tokens in {result.seconds:.3f} s: {result.tokens_per_second:.1f} tokens/s "
              f"(batch {len(prompts)}, {result.micro_batches} micro-batch(es)); time on the cluster "
              f"{100 * result.cluster_share:.0f}% ({result.cluster_seconds:.3f} s over "
              f"{cluster.forward_calls} calls)")
    return 0


def cmd_generate(args) -> int:
    return _run_generate(args.model, args.cluster, args)


def cmd_serve_demo(args) -> int:
    from moe_cluster.checkpoint import complete_checkpoint
    from moe_cluster.local import LocalCluster
    import transformers
    model_dir = args.model
    with tempfile.TemporaryDirectory(prefix="moe-demo-") as tmp:
        if _incomplete(model_dir):
            completed = os.path.join(tmp, "model")
            missing = complete_checkpoint(model_dir, completed, seed=args.seed)
            print(f"{model_dir} lacks {len(missing)} tensors HF needs (e.g. {missing[0]}); serving a copy "
                  f"completed with seed {args.seed} at {completed}")
            model_dir = completed
        with LocalCluster(model_dir, workers=args.workers, replicas=args.replicas, token=args.token) as local:
            print(f"loopback cluster at {local.address}: {args.workers} workers, replicas {args.replicas}, "
                  f"epoch {local.epoch}, logs in {local.log_dir}")
            if args.serve_only:
                print(f"serving until Ctrl-C (SIGINT) or SIGTERM; from another shell:\n"
                      f"  python -m moe_cluster generate --model {model_dir} --cluster {local.address}"
                      + (f" --token {args.token}" if args.token else ""), flush=True)
                _wait_for_signal()
                return 0
            if args.bench:
                from moe_cluster.bench import run_bench
                args.cluster = local.address
                return run_bench(model_dir, args)
            return _run_generate(model_dir, local.address, args)


def _wait_for_signal() -> None:
    import signal
    import threading
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(1.0):
        pass


def _incomplete(model_dir: str) -> bool:
    """True when HF would have to initialise tensors the checkpoint does not hold."""
    import json
    import pathlib
    import torch
    import transformers
    from safetensors import safe_open
    folder = pathlib.Path(model_dir)
    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    stored = set()
    for f in files:
        with safe_open(str(folder / f), "pt") as s:
            stored.update(s.keys())
    return not any(k.startswith("lm_head.") for k in stored) or not any(".self_attn." in k for k in stored)


def _add_generation_args(p: argparse.ArgumentParser, with_cluster: bool) -> None:
    if with_cluster:
        p.add_argument("--cluster", default=_env("CLUSTER"), required=_env("CLUSTER") is None,
                       help="coordinator HOST:PORT (MOE_CLUSTER)")
    p.add_argument("--model", default=_env("MODEL"), required=_env("MODEL") is None,
                   help="HF checkpoint folder (MOE_MODEL)")
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument("--prompt", help="prompt text (needs a tokenizer in --model)")
    prompt.add_argument("--prompt-ids", default=_env("PROMPT_IDS"), help="prompt token ids: 1,2,3")
    p.add_argument("--max-new-tokens", type=int, default=int(_env("MAX_NEW_TOKENS", 16)))
    p.add_argument("--batch", type=int, default=int(_env("BATCH", 1)))
    p.add_argument("--micro-batches", type=int, choices=(1, 2), default=int(_env("MICRO_BATCHES", 1)))
    p.add_argument("--token", default=_env("CLUSTER_TOKEN"), help="cluster token (MOE_CLUSTER_TOKEN)")
    p.add_argument("--wire-dtype", choices=("bf16", "f32"), default=_env("WIRE_DTYPE", "bf16"))
    p.add_argument("--deadline-ms", type=int, default=int(_env("DEADLINE_MS", 10000)))
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default=_env("DTYPE", "float32"),
                   help="dtype of the host model")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moe_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="greedy generation against a running cluster")
    _add_generation_args(g, with_cluster=True)
    g.set_defaults(func=cmd_generate)
    d = sub.add_parser("serve-demo", help="loopback cluster on a checkpoint + generate (or --bench)")
    _add_generation_args(d, with_cluster=False)
    d.add_argument("--workers", type=int, default=int(_env("WORKERS", 3)))
    d.add_argument("--replicas", type=int, default=int(_env("REPLICAS", 1)))
    d.add_argument("--seed", type=int, default=int(_env("SEED", 0)), help="seed completing a partial checkpoint")
    d.add_argument("--bench", action="store_true", help="run the benchmark instead of generate")
    d.add_argument("--serve-only", action="store_true",
                   help="start the cluster and keep it running (print how to run generate against it)")
    d.add_argument("--batches", default=_env("BATCHES", "1,8,32"), help="--bench: batch sizes")
    d.set_defaults(func=cmd_serve_demo)
    b = sub.add_parser("bench", help="decode tokens/s: HF all-local vs cluster (1 and 2 micro-batches)")
    _add_generation_args(b, with_cluster=True)
    b.add_argument("--batches", default=_env("BATCHES", "1,8,32"), help="batch sizes")
    b.set_defaults(func=lambda a: __import__("moe_cluster.bench", fromlist=["run_bench"]).run_bench(a.model, a))
    args = parser.parse_args(argv)
    if args.prompt is None and args.prompt_ids is None:
        args.prompt_ids = "1,2,3,4,5,6,7,8"
    if args.batch < 1 or args.max_new_tokens < 1:
        parser.error("--batch and --max-new-tokens must be >= 1")
    import moe_cluster
    try:
        return args.func(args)
    except moe_cluster.ClusterError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
