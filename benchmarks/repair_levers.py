"""Why adversary correction gains a few points on digits where the paper gains 40: the levers.

Starts from ``instances/repair_digits_{cnn,mlp}.toml`` with the last layer corrected (the
original default of both) and changes one thing at a time:
the corrected layers (last / all / the CNN's convolution), the margin delta, the loss allowance rho, the rounds M,
the number of adversarial examples n_adv, the eps that makes the adversarial set, the seed
that draws it, and the attack eps itself (0.2, where the undefended CNN keeps 4 % FGSM
accuracy, like an undefended MNIST CNN). Every correction is the library's
:func:`mipcert.repair.correct` (l2; ``solver = "nnls"``, the dual, so that whole networks
finish; ``--highs`` re-runs the last-layer rows with HiGHS for the times). For each
configuration it reports

* clean test accuracy, FGSM and PGD test accuracy (white-box: attacks on *that* network),
* generalisation: accuracy on the test points' FGSM examples made against the *original*
  network (a fixed adversarial test set, "transfer"),
* train-adversarial accuracy: the same on the original's FGSM examples of the training points
  (the set the 10 examples were drawn from),
* efficacy, drawdown and seconds,

and, at the correction's wall time, the two fine-tuning baselines on the same examples (the
given set only; and PGD adversarial fine-tuning, which also makes fresh PGD examples).
A last block gives the baselines 2 s and 15 s, to show what more time buys them.

    OMP_NUM_THREADS=1 python benchmarks/repair_levers.py [--only cnn] [--quick]

Prints one table per network and saves ``benchmarks/results/repair_levers.json``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: (label, overrides of the instance) -- one lever at a time from the instance
LEVERS = [
    ("last layer", {}),
    ("all layers", {"layers": "all"}),
    ("convolution", {"layers": ["conv"]}),          # the CNN only: its 3x3x4 kernel + biases
    ("delta 3", {"delta": 3.0}),
    ("delta 10", {"delta": 10.0}),
    ("all layers, delta 3", {"layers": "all", "delta": 3.0}),
    ("rho 2", {"rho": 2.0}),
    ("rounds 20", {"rounds": 20}),
    ("adversarial set at eps 0.2", {"adv_eps": 0.2}),
    ("n_adv 30", {"n_adv": 30}),
    ("n_adv 100", {"n_adv": 100}),
    ("n_adv 100, delta 3", {"n_adv": 100, "delta": 3.0}),
    ("seed 1", {"seed": 1}),
    ("seed 2", {"seed": 2}),
    ("eps 0.2 (attack and set)", {"eps": 0.2}),
    ("eps 0.2, all layers, delta 3", {"eps": 0.2, "layers": "all", "delta": 3.0}),
]
QUICK = {"last layer", "all layers", "delta 3", "n_adv 100", "eps 0.2 (attack and set)"}
BUDGETS = (2.0, 15.0)


def _rounded(d: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in d.items()}


def metrics(inst, network, data, fns, transfer_test, transfer_train, seconds):
    """Accuracies of one network (fractions); see the module doc."""
    from mipcert.attacks import accuracy, fgsm, pgd

    Xtr, Xte, ytr, yte = data
    return _rounded({
        "clean_acc": accuracy(network, Xte, yte),
        "fgsm_acc": accuracy(network, fgsm(network, Xte, yte, inst.eps), yte),
        "pgd_acc": accuracy(network, pgd(network, Xte, yte, inst.eps, steps=inst.steps,
                                         rng=np.random.default_rng(inst.seed)), yte),
        "generalisation": accuracy(network, transfer_test, yte),
        "train_adv_acc": accuracy(network, transfer_train, ytr),
        "efficacy": float(np.mean(network.forward(fns.X_adv).argmax(1) == fns.y_adv)),
        "seconds": seconds})


def run_network(name: str, quick: bool, highs: bool, say) -> dict:
    from mipcert.io import load_network
    from mipcert.repair import correct
    from mipcert.repair.baseline import pgd_finetune
    from mipcert.repair.cuts import CorrectionFunctions
    from mipcert.repair.experiment import attack, select_adversarial
    from mipcert.repair.instance import load_instance

    base = load_instance(ROOT / "instances" / f"repair_digits_{name}.toml")
    base = dataclasses.replace(base, layers="last", n_points=0, norms=["l2"], solver="nnls",
                               max_change=None)
    network = load_network(base.model_path)
    data = Xtr, Xte, ytr, yte = base.load_data()
    rows, sets = [], {}

    def adversarial_set(inst, adv_eps):
        key = (inst.n_adv, adv_eps, inst.seed)
        if key not in sets:
            idx, X_adv = select_adversarial(dataclasses.replace(inst, eps=adv_eps), network,
                                            Xtr, ytr)
            sets[key] = (idx, X_adv)
        return sets[key]

    def baseline_rows(inst, X_adv, y_adv, fns, tt, ttr, budget, label):
        out = []
        for bname, steps in (("fine-tuning (given set)", 0), ("PGD fine-tuning", inst.pgd_steps)):
            ft = pgd_finetune(network, X_adv, y_adv, Xtr, ytr, layers=inst.layers, eps=inst.eps,
                              epochs=10_000, lr=inst.lr, batch=inst.batch, pgd_steps=steps,
                              wall_time=budget, seed=inst.seed)
            row = {"config": label, "network": bname, "budget_s": round(budget, 3),
                   "steps": ft.steps,
                   **metrics(inst, ft.network(), data, fns, tt, ttr, round(ft.seconds, 3))}
            out.append(row)
        return out

    layer_names = set(network.layer_names)
    levers = [(lab, o) for lab, o in LEVERS if (not quick or lab in QUICK)
              and (isinstance(o.get("layers", "last"), str) or set(o["layers"]) <= layer_names)]
    originals = {}
    for label, over in levers:
        over = dict(over)
        adv_eps = over.pop("adv_eps", None)
        inst = dataclasses.replace(base, **over)
        idx, X_adv = adversarial_set(inst, adv_eps or inst.eps)
        y_adv = ytr[idx]
        tt, ttr = attack(inst, network, Xte, yte), attack(inst, network, Xtr, ytr)
        params_fns, budget = None, None
        for solver in (["nnls", "highs"] if highs and inst.layers == "last" else ["nnls"]):
            res = correct(network, X_adv, y_adv, Xtr, ytr, layers=inst.layers, delta=inst.delta,
                          rho=inst.rho, rounds=inst.rounds, omega=inst.omega, norm="l2",
                          solver=solver, time_limit=inst.time_limit, threads=1)
            fns = CorrectionFunctions(res.params, X_adv, y_adv, Xtr, ytr, delta=inst.delta,
                                      rho=inst.rho)
            params_fns = params_fns or fns
            budget = res.seconds if budget is None else budget   # the nnls correction's time
            key = inst.eps
            if key not in originals:
                originals[key] = metrics(inst, network, data, fns, tt, ttr, 0.0)
                rows.append({"config": f"original (eps {key})", "network": "original",
                             **originals[key], "drawdown": 0.0})
            row = {"config": label, "network": f"corrected (l2, {solver})", "status": res.status,
                   "rounds": len(res.pool), "parameters": res.params.size,
                   "loss": None if res.pick is None else round(res.pick.loss, 5),
                   "loss_bound": round(res.loss_bound, 5),
                   "violated": None if res.pick is None else res.pick.violated}
            if res.pick is not None:
                row.update(metrics(inst, res.network(), data, fns, tt, ttr,
                                   round(res.seconds, 3)))
            row["drawdown"] = round(originals[key]["clean_acc"] - row.get("clean_acc", np.nan), 4)
            rows.append(row)
            say(_line(row))
        for b in baseline_rows(inst, X_adv, y_adv, params_fns, tt, ttr, budget, label):
            b["drawdown"] = round(originals[inst.eps]["clean_acc"] - b["clean_acc"], 4)
            rows.append(b)
            say(_line(b))
        if label == "last layer":
            for budget in BUDGETS:
                for b in baseline_rows(inst, X_adv, y_adv, params_fns, tt, ttr, budget,
                                       f"{label}, baselines given {budget:g} s"):
                    b["drawdown"] = round(originals[inst.eps]["clean_acc"] - b["clean_acc"], 4)
                    rows.append(b)
                    say(_line(b))
    return {"instance": f"instances/repair_digits_{name}.toml", "rows": rows}


COLS = ("clean_acc", "fgsm_acc", "pgd_acc", "generalisation", "train_adv_acc", "efficacy")


def _line(r: dict) -> str:
    vals = "  ".join(f"{100 * r[c]:5.1f}" if r.get(c) is not None else "    -" for c in COLS)
    dd = r.get("drawdown")
    dd = "   -" if dd is None or dd != dd else f"{100 * dd:+4.1f}"
    return f"{r['config'][:38]:38s} {r['network'][:26]:26s} {vals}  {dd}  {r.get('seconds', 0):6.2f}"


HEADER = (f"{'configuration':38s} {'network':26s} clean  FGSM   PGD  gener trainadv effic  "
          f"drawdn  seconds")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", choices=["mlp", "cnn"], default=None)
    p.add_argument("--quick", action="store_true", help=f"only {sorted(QUICK)}")
    p.add_argument("--highs", action="store_true",
                   help="also run the last-layer corrections with HiGHS (slower)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "repair_levers.json"))
    args = p.parse_args(argv)
    out = {"machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(),
                       "platform": platform.platform(),
                       "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
           "columns": "fractions; generalisation = accuracy on the original network's FGSM "
                      "examples of the test points; train_adv_acc = the same on the training "
                      "points; drawdown = clean accuracy lost"}
    for name in ("cnn", "mlp"):
        if args.only and name != args.only:
            continue
        start = time.perf_counter()
        print(f"\n{name}\n{HEADER}", flush=True)
        out[name] = run_network(name, args.quick, args.highs, lambda m: print(m, flush=True))
        out[name]["total_seconds"] = round(time.perf_counter() - start, 1)
    path = Path(args.out)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=float) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
