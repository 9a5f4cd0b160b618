"""Interval AGT time per epoch versus plain training of the same model.

Columns (seconds per epoch unless said otherwise; every timing is the minimum over
``--repeats`` rounds, the methods interleaved within each round so that load from other
processes hits them alike):

* ``plain_torch_epoch_s``: plain training of the same model: the same SGD run (same init,
  batches, learning rates, float64, same device and thread count) in torch, forward +
  autograd backward of the batch-mean loss + the parameter update, for every step.
* ``per_sample_torch_epoch_s``: the same run with explicit per-sample gradients (what
  clipped / private SGD computes), via the interval code on a zero-width box.
* ``numpy_reference_epoch_s``: the numpy reference SGD (``mipcert.network.training``).
* ``agt_epoch_s``: interval AGT (:func:`interval_agt`, the fused path, with the compiled
  top-k kernel of :mod:`mipcert.agt.kernels` when it is built: ``meta.kernel`` says which).
* ``agt_torch_epoch_s``: the same with the kernel turned off (``MIPCERT_NO_KERNELS=1``):
  what an install without a C compiler gets.
* ``agt_reference_epoch_s``: interval AGT by the materialising reference path
  (``reference=True``: every per-sample interval gradient, then the aggregation rules).
* ``topk_floor_epoch_s``: the per-coordinate top-k selections alone as ``torch.topk`` does
  them (two ``torch.topk`` over ``(P, b)`` per step), on random data of the same shape: the
  floor of the torch path, which the kernel goes below.
* ``ratio_*``: ``agt_epoch_s`` divided by the named column.

Writes ``benchmarks/results/agt_timing.json`` and prints a table.

    python benchmarks/agt_timing.py [--repeats 7] [--threads 1 2] [--instances moons_mlp digits_flip]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mipcert.agt.data import load_dataset
from mipcert.agt.instance import load_instance
from mipcert.agt import kernels
from mipcert.agt.interval_agt import interval_agt
from mipcert.agt.run import build_run
from mipcert.network import training as ref

ROOT = Path(__file__).resolve().parents[1]


def plain_torch_train(run, device) -> float:
    """Seconds for the nominal run with torch autograd (batch-mean loss, plain SGD)."""
    dev = torch.device(device)
    X = torch.as_tensor(run.X, dtype=torch.float64, device=dev)
    y = torch.as_tensor(run.y, dtype=torch.float64, device=dev)
    params = []
    for W, b in ref.unflatten(run.theta0.copy(), run.layers):
        params.append((torch.tensor(W, device=dev, requires_grad=True),
                       None if b is None else torch.tensor(b, device=dev, requires_grad=True)))
    batches = [torch.as_tensor(b, device=dev) for b in run.batches]
    t0 = time.perf_counter()
    for idx, lr in zip(batches, run.lrs):
        a, yb = X[idx], y[idx]
        for l, (W, b) in enumerate(params):
            a = a @ W.T + (b if b is not None else 0.0)
            if l < len(params) - 1:
                a = torch.relu(a)
        if run.loss == "cross_entropy":
            loss = torch.nn.functional.cross_entropy(a, yb.long())
        elif run.loss == "bce":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(a[:, 0], yb)
        elif run.loss == "hinge":
            loss = torch.clamp_min(1 - yb * a[:, 0], 0).mean()
        else:
            loss = ((a[:, 0] - yb) ** 2).mean()
        grads = torch.autograd.grad(loss, [p for pair in params for p in pair if p is not None])
        with torch.no_grad():
            for p, g in zip([p for pair in params for p in pair if p is not None], grads):
                p -= float(lr) * g
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def per_sample_torch_train(run, device) -> float:
    """Seconds for the nominal run in torch with explicit per-sample gradients (what
    clipped / private SGD computes; the same semantics as the numpy reference)."""
    dev = torch.device(device)
    X = torch.as_tensor(run.X, dtype=torch.float64, device=dev)
    y = torch.as_tensor(run.y, dtype=torch.float64, device=dev)
    lo = torch.as_tensor(run.theta0, dtype=torch.float64, device=dev)
    from mipcert.agt.propagate import gradient_blocks
    batches = [torch.as_tensor(b, device=dev) for b in run.batches]
    t0 = time.perf_counter()
    theta = lo.clone()
    for idx, lr in zip(batches, run.lrs):
        # zero-width box: the interval code degenerates to plain per-sample gradients
        blocks, _, _ = gradient_blocks(theta, theta, run.layers, X[idx], y[idx], run.loss,
                                       run.clip, n_classes=run.n_classes)
        g = torch.cat([b[0].sum(0) for b in blocks]) / len(idx)
        theta = theta - float(lr) * g
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def topk_floor(run, pert, device) -> float:
    """Seconds for the exact top-k selections alone: per step, ``topk`` of the ``k``
    largest along the samples of two ``(P, b)`` float64 arrays (lower and upper side)."""
    if pert.is_zero:
        return 0.0
    dev = torch.device(device)
    g = torch.Generator(device=dev).manual_seed(0)
    arrays = {}
    for b in {len(x) for x in run.batches}:
        arrays[b] = [torch.randn(run.n_params, b, dtype=torch.float64, device=dev, generator=g)
                     for _ in range(2)]
    t0 = time.perf_counter()
    for batch in run.batches:
        for a in arrays[len(batch)]:
            if pert.k < a.shape[1]:
                torch.topk(a, pert.k, dim=1, largest=True, sorted=False).values.sum(1)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _without_kernel(fn):
    """Run ``fn`` with the compiled kernel turned off."""
    old = os.environ.get("MIPCERT_NO_KERNELS")
    os.environ["MIPCERT_NO_KERNELS"] = "1"
    try:
        return fn()
    finally:
        if old is None:
            del os.environ["MIPCERT_NO_KERNELS"]
        else:
            os.environ["MIPCERT_NO_KERNELS"] = old


def interleaved_best(fns: dict, repeats: int) -> dict:
    """Minimum seconds of each function over ``repeats`` rounds (one warm-up round); the
    functions run one after the other within a round."""
    for fn in fns.values():
        fn()
    best = {name: float("inf") for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], fn())
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--instances", nargs="+", default=["moons_mlp", "digits_flip"])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch CPU thread counts to measure (each for every method)")
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the (slow) materialising reference AGT path")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/agt_timing.json"))
    args = ap.parse_args(argv)
    # interval_agt does this on its first call; do it first so that every method measured
    # runs under the same allocator settings (see mipcert.bounds.interval.keep_freed_memory)
    from mipcert.bounds.interval import keep_freed_memory
    malloc_tuned = keep_freed_memory()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in args.instances:
        inst = load_instance(ROOT / f"instances/agt_{name}.toml")
        run = build_run(inst, load_dataset(inst.data))
        epochs = inst.training.epochs
        pert = inst.perturbation

        def numpy_ref():
            t = time.perf_counter()
            run.train()
            return time.perf_counter() - t

        for dev in devices:
            for threads in (args.threads if dev == "cpu" else [torch.get_num_threads()]):
                torch.set_num_threads(threads)
                fns = {"plain": lambda: plain_torch_train(run, dev),
                       "per_sample": lambda: per_sample_torch_train(run, dev),
                       "agt": lambda: interval_agt(run, pert, dev).seconds,
                       "agt_torch": lambda: _without_kernel(
                           lambda: interval_agt(run, pert, dev).seconds),
                       "topk_floor": lambda: topk_floor(run, pert, dev)}
                if dev == "cpu":
                    fns["numpy"] = numpy_ref
                if not args.no_reference:
                    fns["agt_reference"] = lambda: interval_agt(run, pert, dev,
                                                                reference=True).seconds
                t = interleaved_best(fns, args.repeats)
                row = {"instance": name, "device": dev, "threads": threads,
                       "perturbation": pert.kind, "k": pert.k, "n_params": run.n_params,
                       "n_train": len(run.X), "batch_size": max(len(b) for b in run.batches),
                       "steps": len(run.batches), "epochs": epochs,
                       "plain_torch_epoch_s": t["plain"] / epochs,
                       "per_sample_torch_epoch_s": t["per_sample"] / epochs,
                       "numpy_reference_epoch_s": t["numpy"] / epochs if "numpy" in t else None,
                       "agt_epoch_s": t["agt"] / epochs,
                       "agt_torch_epoch_s": t["agt_torch"] / epochs,
                       "agt_reference_epoch_s": (t["agt_reference"] / epochs
                                                 if "agt_reference" in t else None),
                       "topk_floor_epoch_s": t["topk_floor"] / epochs,
                       "ratio_vs_plain_torch": t["agt"] / t["plain"],
                       "ratio_vs_per_sample_torch": t["agt"] / t["per_sample"],
                       "topk_floor_vs_plain_torch": t["topk_floor"] / t["plain"]}
                if "agt_reference" in t:
                    row["speedup_vs_reference_agt"] = t["agt_reference"] / t["agt"]
                rows.append(row)
    # one figure per instance and device that no choice of thread count flatters: the
    # fastest AGT epoch against the fastest plain epoch, each over every thread count
    for r in rows:
        same = [q for q in rows if q["instance"] == r["instance"] and q["device"] == r["device"]]
        r["ratio_best_vs_best"] = (min(q["agt_epoch_s"] for q in same)
                                   / min(q["plain_torch_epoch_s"] for q in same))
    meta = {"torch": torch.__version__, "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "repeats": args.repeats, "malloc_keep_freed_memory": malloc_tuned,
            "kernel": kernels.describe(),
            "timing": "minimum over the repeats, methods interleaved within each round",
            "columns": {
                "plain_torch_epoch_s": "same full-batch SGD run in torch: forward + autograd "
                                       "backward of the batch-mean loss + update, float64",
                "per_sample_torch_epoch_s": "same run with explicit per-sample gradients",
                "numpy_reference_epoch_s": "numpy reference SGD (per-sample gradients)",
                "agt_epoch_s": "interval AGT, fused path (mipcert.agt.stepbounds), with the "
                               "compiled top-k kernel (meta.kernel)",
                "agt_torch_epoch_s": "the same with the kernel off (MIPCERT_NO_KERNELS=1)",
                "agt_reference_epoch_s": "interval AGT, materialising reference path",
                "ratio_best_vs_best": "the fastest agt_epoch_s over the thread counts "
                                      "measured / the fastest plain_torch_epoch_s over them",
                "topk_floor_epoch_s": "torch.topk selections alone (2 x topk over (P, b) "
                                      "per step): the floor of the torch path"}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    os.replace(fh.name, out)
    hdr = (f"{'instance':<12} {'dev':<4} {'thr':>3} {'plain/ep':>9} {'persamp/ep':>10} "
           f"{'AGT/ep':>9} {'AGTtorch/ep':>11} {'AGTref/ep':>9} {'topk/ep':>9} "
           f"{'AGT/plain':>9} {'best/best':>9}")
    print(hdr)
    for r in rows:
        ref_s = r["agt_reference_epoch_s"]
        print(f"{r['instance']:<12} {r['device']:<4} {r['threads']:>3} "
              f"{r['plain_torch_epoch_s']:>9.4f} {r['per_sample_torch_epoch_s']:>10.4f} "
              f"{r['agt_epoch_s']:>9.4f} {r['agt_torch_epoch_s']:>11.4f} "
              f"{(ref_s if ref_s is not None else float('nan')):>9.4f} "
              f"{r['topk_floor_epoch_s']:>9.4f} {r['ratio_vs_plain_torch']:>9.2f} "
              f"{r['ratio_best_vs_best']:>9.2f}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
