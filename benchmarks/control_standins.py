"""``mipcert verify`` on trained control-policy stand-ins (the "small RL control networks" of
issue 11).

VNN-COMP's reinforcement-learning benchmarks are small ReLU policies (cart-pole: 4 state
inputs, 2 actions; lunar lander: 8 inputs, 4 actions; Dubins rejoin: 8 inputs, 8 outputs)
with properties "on this box of states the policy picks this action". Their networks are
not in this repository. These stand-ins have the same shapes and are *trained*, not random:
each imitates a fixed linear-feedback policy ``argmax(K s)`` on states drawn from a box
(cross-entropy, Adam, seeded, a few seconds on one core), so their decision boundaries are
learned ones. Properties: a box of radius ``r`` (each state scaled to [-1, 1]) around a
state the network and the teacher agree on, "the action stays the network's choice", at
three radii.

    python benchmarks/control_standins.py [--states 4] [--radii 0.01,0.05,0.1] [--timeout 60]

Networks and properties go to ``benchmarks/.cache/control`` (git-ignored); each instance runs
as its own ``mipcert verify --json`` process; a ``sat`` is re-checked in onnxruntime by the
CLI itself. Results: ``benchmarks/results/control_standins.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from vnncomp_timing import run_rows, write_results  # noqa: E402

CACHE = ROOT / "benchmarks" / ".cache" / "control"
# name: (inputs, hidden widths, actions)
POLICIES = {"cartpole": (4, (64, 64), 2), "lunarlander": (8, (64, 64), 4),
            "dubinsrejoin": (8, (256, 256), 8)}
RADII = (0.01, 0.05, 0.1)


def train_policy(n_in, hidden, n_out, seed=0, samples=20_000, epochs=30):
    """A ReLU MLP trained to imitate ``argmax(K s)`` (``K`` random, seeded) on ``[-1, 1]^n``."""
    import torch

    rng = np.random.default_rng(seed)
    K = rng.normal(size=(n_out, n_in))
    S = rng.uniform(-1, 1, size=(samples, n_in)).astype(np.float32)
    a = np.argmax(S @ K.T, axis=1)
    torch.manual_seed(seed)
    layers, width = [], n_in
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    model = torch.nn.Sequential(*layers, torch.nn.Linear(width, n_out))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    St, at = torch.from_numpy(S), torch.from_numpy(a)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(samples, generator=gen).split(128):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(St[idx]), at[idx]).backward()
            opt.step()
    return model.eval(), K


def write_property(path: Path, s0, action: int, r: float, n_out: int) -> None:
    """VNN-LIB 1.0: the box ``clip(s0 -+ r, -1, 1)``; unsafe if another action scores at
    least as high as ``action``."""
    lo, hi = np.clip(s0 - r, -1, 1), np.clip(s0 + r, -1, 1)
    lines = [f"(declare-const X_{i} Real)" for i in range(s0.size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    for i in range(s0.size):
        lines += [f"(assert (<= X_{i} {float(hi[i])!r}))", f"(assert (>= X_{i} {float(lo[i])!r}))"]
    lines += ["(assert (or"] + [f"    (and (>= Y_{j} Y_{action}))" for j in range(n_out)
                                if j != action] + ["))", ""]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)


def build(states: int, radii=RADII) -> list[dict]:
    import torch

    CACHE.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (n_in, hidden, n_out) in POLICIES.items():
        onnx_path = CACHE / f"{name}.onnx"
        model, K = train_policy(n_in, hidden, n_out)
        if not onnx_path.exists():
            torch.onnx.export(model, torch.zeros(1, n_in), str(onnx_path), input_names=["input"],
                              output_names=["output"], opset_version=13, dynamo=False)
        rng = np.random.default_rng(1)
        test = rng.uniform(-1, 1, size=(2000, n_in)).astype(np.float32)
        with torch.no_grad():
            pred = model(torch.from_numpy(test)).argmax(1).numpy()
        agree = pred == np.argmax(test @ K.T, axis=1)
        print(f"{name}: imitates its teacher on {agree.mean():.3f} of 2000 states", file=sys.stderr)
        for k in np.flatnonzero(agree)[:states]:
            for r in radii:
                prop = CACHE / f"{name}_state{k}_r{r}.vnnlib"
                if not prop.exists():
                    write_property(prop, test[k].astype(np.float64), int(pred[k]), r, n_out)
                rows.append({"onnx": str(onnx_path), "vnnlib": str(prop), "verdict": "",
                             "network": name, "state": int(k), "radius": r})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--states", type=int, default=4, help="states per policy")
    ap.add_argument("--radii", default=",".join(map(str, RADII)),
                    help="box radii, comma-separated (states scaled to [-1, 1])")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "control_standins.json"))
    ap.add_argument("--note", default="")
    args = ap.parse_args(argv)
    rows = build(args.states, [float(r) for r in args.radii.split(",")])
    load_before = os.getloadavg()
    results = run_rows(rows, args.timeout, ("network", "state", "radius"))
    walls = [r["wall_seconds"] for r in results]
    summary = {"instances": len(results),
               "settled": sum(r["verdict"] in ("sat", "unsat") for r in results),
               "sat": sum(r["verdict"] == "sat" for r in results),
               "unsat": sum(r["verdict"] == "unsat" for r in results),
               "median_wall_seconds": round(statistics.median(walls), 3),
               "max_wall_seconds": round(max(walls), 3)}
    write_results(Path(args.out), summary, results, load_before, timeout=args.timeout,
                  note=args.note)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
