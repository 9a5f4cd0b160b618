"""Interval AGT time per epoch versus plain training of the same model.

Plain training = the same SGD run (same model, init, batches, learning rates) in torch
with autograd on the batch-mean loss (no per-sample gradients), on the same device.
Also reported: the numpy reference (per-sample gradients, the executable semantics).
Writes ``benchmarks/results/agt_timing.json`` and prints a table.

    python benchmarks/agt_timing.py [--repeats 3] [--instances moons_mlp digits_flip]
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


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    return min(fn() for _ in range(repeats))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--instances", nargs="+", default=["moons_mlp", "digits_flip"])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for both AGT and plain training (default 1)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/agt_timing.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in args.instances:
        inst = load_instance(ROOT / f"instances/agt_{name}.toml")
        run = build_run(inst, load_dataset(inst.data))
        epochs = inst.training.epochs

        def numpy_ref():
            t = time.perf_counter()
            run.train()
            return time.perf_counter() - t

        t_np = best_of(numpy_ref, args.repeats)
        for dev in devices:
            t_plain = best_of(lambda: plain_torch_train(run, dev), args.repeats)
            t_ps = best_of(lambda: per_sample_torch_train(run, dev), args.repeats)
            t_agt = best_of(lambda: interval_agt(run, inst.perturbation, dev).seconds,
                            args.repeats)
            rows.append({"instance": name, "device": dev, "perturbation": inst.perturbation.kind,
                         "k": inst.perturbation.k, "n_params": run.n_params,
                         "n_train": len(run.X), "steps": len(run.batches), "epochs": epochs,
                         "plain_torch_epoch_s": t_plain / epochs,
                         "numpy_reference_epoch_s": t_np / epochs,
                         "per_sample_torch_epoch_s": t_ps / epochs,
                         "ratio_vs_per_sample_torch": t_agt / t_ps,
                         "agt_epoch_s": t_agt / epochs,
                         "ratio_vs_plain_torch": t_agt / t_plain,
                         "ratio_vs_numpy_reference": t_agt / t_np})
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "repeats": args.repeats}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, delete=False, suffix=".tmp") as fh:
        json.dump({"meta": meta, "rows": rows}, fh, indent=2)
    os.replace(fh.name, out)
    hdr = f"{'instance':<12} {'dev':<5} {'plain/ep':>10} {'persamp/ep':>10} {'numpy/ep':>10} " \
          f"{'AGT/ep':>10} {'AGT/plain':>9} {'AGT/persamp':>11} {'AGT/numpy':>9}"
    print(hdr)
    for r in rows:
        print(f"{r['instance']:<12} {r['device']:<5} {r['plain_torch_epoch_s']:>10.4f} "
              f"{r['per_sample_torch_epoch_s']:>10.4f} "
              f"{r['numpy_reference_epoch_s']:>10.4f} {r['agt_epoch_s']:>10.4f} "
              f"{r['ratio_vs_plain_torch']:>9.2f} {r['ratio_vs_per_sample_torch']:>11.2f} "
              f"{r['ratio_vs_numpy_reference']:>9.2f}")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
