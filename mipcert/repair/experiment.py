"""One adversary-correction experiment, as ``mipcert repair INSTANCE.toml`` runs it.

1. Load the network and the data split (digits or MNIST); attack the ``split`` points (FGSM or PGD at
   ``eps``) and draw ``n_adv`` adversarial examples (points the network classifies correctly
   whose attacked version it misclassifies; seeded).
2. Correct them with every objective in ``norms`` (:func:`~mipcert.repair.correct`), clean
   loss over the same split.
3. The baselines, fine-tuning the same parameters with Adam for at most the first
   correction's wall time (:func:`~mipcert.repair.baseline.pgd_finetune`): on the same
   adversarial examples and clean points only ("fine-tuning (given set)", like for like), and
   with fresh PGD examples of every clean mini-batch as well ("PGD fine-tuning", when
   ``pgd_steps > 0``: adversarial training, which sees far more adversarial data).
4. Evaluate every network (:func:`evaluate`): the repair literature's efficacy, drawdown and
   generalisation, clean / FGSM / PGD test accuracy, margin violations on the adversarial set,
   and certified robust accuracy of the first ``n_points`` test points at ``eps_cert`` with
   the MILP verifier (certified = ``unsat``, falsified = ``sat``, open = anything else).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..attacks import accuracy, fgsm, pgd
from ..errors import InputError
from .baseline import pgd_finetune
from .correct import MARGIN_TOL, CorrectionResult, correct
from .cuts import CorrectionFunctions

log = logging.getLogger(__name__)

#: the omegas whose picks the report and the plot show
OMEGAS = (0.0, 0.2, 0.4)
#: the two baseline rows (see :func:`baselines`)
GIVEN_SET, PGD_FINETUNING = "fine-tuning (given set)", "PGD fine-tuning"


@dataclass
class RepairReport:
    instance: dict
    adversarial: dict
    rows: list[dict]
    corrections: dict[str, CorrectionResult] = field(repr=False)
    networks: dict = field(repr=False, default_factory=dict)

    def as_json(self) -> dict:
        pools = {}
        for norm, res in self.corrections.items():
            pools[norm] = res.as_json()
            pools[norm]["picks"] = {str(o): res.pick_index(o) for o in OMEGAS}
        from ..report.repair_report import PAPER

        return {"instance": self.instance, "adversarial": self.adversarial, "rows": self.rows,
                "corrections": pools, "paper": PAPER}


def attack(inst, network, X, y, kind=None, rng=None):
    kind = kind or inst.attack
    if kind == "fgsm":
        return fgsm(network, X, y, inst.eps)
    return pgd(network, X, y, inst.eps, steps=inst.steps, alpha=inst.alpha,
               rng=rng or np.random.default_rng(inst.seed))


def select_adversarial(inst, network, X, y):
    """``(indices, X_adv)``: ``n_adv`` points of ``X`` the network gets right and whose attacked
    version it gets wrong, drawn with the instance's seed."""
    adv = attack(inst, network, X, y)
    ok = (network.forward(X).argmax(1) == y) & (network.forward(adv).argmax(1) != y)
    pool = np.flatnonzero(ok)
    if len(pool) < inst.n_adv:
        raise InputError(
            f"[correction] n_adv = {inst.n_adv} but the {inst.attack} attack at eps = "
            f"{inst.eps} turns only {len(pool)} correctly classified {inst.split} points into "
            "misclassified ones: lower n_adv or raise eps")
    idx = np.sort(np.random.default_rng(inst.seed).choice(pool, inst.n_adv, replace=False))
    return idx, adv[idx]


def certify(inst, network, X, y) -> dict:
    """Certified robust accuracy of the first ``n_points`` points at ``eps_cert`` (MILP)."""
    from ..verify import verify_robustness

    counts = {"certified": 0, "falsified": 0, "open": 0}
    start = time.perf_counter()
    for x, label in zip(X[: inst.n_points], y[: inst.n_points]):
        res = verify_robustness(network, x, int(label), inst.eps_cert, timeout=inst.cert_timeout,
                                bounds=inst.bounds, threads=1, seed=inst.seed)
        key = {"unsat": "certified", "sat": "falsified"}.get(res.verdict, "open")
        counts[key] += 1
    n = min(inst.n_points, len(X))
    counts["points"] = n
    counts["certified_accuracy"] = counts["certified"] / n if n else None
    counts["seconds"] = round(time.perf_counter() - start, 3)
    return counts


def evaluate(inst, name, network, data, fns, base_clean, transfer, seconds, status="") -> dict:
    """One table row (see the module doc); ``transfer`` = the test split attacked on the
    original network (generalisation), ``fns`` the correction functions (violations)."""
    Xtr, Xte, ytr, yte = data
    row = {"network": name, "status": status, "seconds": round(seconds, 3)}
    if network is None:
        return row
    w = fns.params.vector(network)
    margins = fns.margins(w)
    clean = accuracy(network, Xte, yte)
    row.update(
        clean_acc=clean,
        fgsm_acc=accuracy(network, fgsm(network, Xte, yte, inst.eps), yte),
        pgd_acc=accuracy(network, pgd(network, Xte, yte, inst.eps, steps=inst.steps,
                                      alpha=inst.alpha, rng=np.random.default_rng(inst.seed)),
                         yte),
        efficacy=float(np.mean(network.forward(fns.X_adv).argmax(1) == fns.y_adv)),
        drawdown=base_clean - clean,
        generalisation=accuracy(network, transfer, yte),
        violated=int((margins < fns.delta - MARGIN_TOL).sum()),
        violation=float(np.maximum(fns.delta - margins, 0).sum()),
        clean_loss=fns.loss(w))
    if inst.n_points:
        row["certify"] = certify(inst, network, Xte, yte)
    return row


def baselines(inst) -> list[tuple[str, int]]:
    """``(row name, pgd_steps)`` of the fine-tuning baselines: on exactly the correction's data
    (the given adversarial examples + clean points), and, when ``pgd_steps > 0``, PGD
    adversarial fine-tuning that also makes fresh PGD examples of every clean mini-batch."""
    rows = [(GIVEN_SET, 0)]
    return rows + [(PGD_FINETUNING, inst.pgd_steps)] if inst.pgd_steps > 0 else rows


def run_experiment(inst, progress: Callable[[str], None] | None = None) -> RepairReport:
    """Run the whole experiment of an instance (see the module doc)."""
    from ..io import load_network

    say = progress or (lambda msg: log.info("%s", msg))
    network = load_network(inst.model_path)
    data = Xtr, Xte, ytr, yte = inst.load_data()
    if network.input_size != Xtr.shape[1]:
        raise InputError(f"[model] the network takes {network.input_size} inputs but "
                         f"{inst.source} images have {Xtr.shape[1]} pixels")
    X_clean, y_clean = (Xtr, ytr) if inst.split == "train" else (Xte, yte)
    idx, X_adv = select_adversarial(inst, network, X_clean, y_clean)
    y_adv = y_clean[idx]
    say(f"{len(idx)} {inst.attack} adversarial examples at eps = {inst.eps} from the "
        f"{inst.split} split")
    corrections, networks = {}, {"original": network}
    for norm in inst.norms:
        say(f"correcting ({norm}, layers = {inst.layers}, up to {inst.rounds} rounds)")
        res = correct(network, X_adv, y_adv, X_clean, y_clean, layers=inst.layers,
                      delta=inst.delta, rho=inst.rho, rounds=inst.rounds, omega=inst.omega,
                      norm=norm, solver=inst.solver, time_limit=inst.time_limit,
                      max_change=inst.max_change, threads=inst.threads)
        say(f"  {res.status} after {len(res.pool)} rounds, {res.seconds:.1f}s {res.message}")
        corrections[norm] = res
        networks[f"corrected ({norm})"] = res.network()
    fns = CorrectionFunctions(corrections[inst.norms[0]].params, X_adv, y_adv, X_clean, y_clean,
                              delta=inst.delta, rho=inst.rho)
    seconds = {"original": 0.0}
    status = {"original": ""}
    for norm, res in corrections.items():
        seconds[f"corrected ({norm})"] = res.seconds
        status[f"corrected ({norm})"] = res.status
    if inst.baseline:
        budget = corrections[inst.norms[0]].seconds
        for name, pgd_steps in baselines(inst):
            say(f"{name} for at most {budget:.1f}s (the {inst.norms[0]} correction's time)")
            ft = pgd_finetune(network, X_adv, y_adv, X_clean, y_clean, layers=inst.layers,
                              eps=inst.eps, epochs=inst.epochs, lr=inst.lr, batch=inst.batch,
                              pgd_steps=pgd_steps, wall_time=budget, seed=inst.seed)
            networks[name] = ft.network()
            seconds[name] = ft.seconds
            status[name] = f"{ft.steps} steps ({ft.epochs:.1f} epochs)"
    transfer = attack(inst, network, Xte, yte)
    base_clean = accuracy(network, Xte, yte)
    rows = []
    for name, net in networks.items():
        say(f"evaluating {name}" + (f" (certifying {inst.n_points} points)"
                                    if inst.n_points and net is not None else ""))
        rows.append(evaluate(inst, name, net, data, fns, base_clean, transfer, seconds[name],
                             status[name]))
    adversarial = {"indices": idx.tolist(), "labels": y_adv.tolist(), "split": inst.split,
                   "attack": inst.attack, "eps": inst.eps}
    return RepairReport(inst.as_dict(), adversarial, rows, corrections, networks)
