"""Ground truth for training-time certificates: the hull of the parameters attacks reach.

For a training run and a perturbation model with ONE budget ``k`` over the whole run
(FORMULATIONS 3.2; the same sample is changed the same way in every step), the *reachable
hull* is, per parameter ``j``, ``[min theta_T[j], max theta_T[j]]`` over every admissible
perturbed data set. Every sound certificate (interval AGT, the MIP bounds) must contain it.

* :func:`enumerate_hull` trains on every admissible data set, so its hull is exact: label
  flips (and ``bounded`` with ``flips`` only, ``eps = nu = 0``) and removals of subsets of
  size ``0..k`` of the samples that appear in some batch (``sum_j C(n, j) m^j`` runs, ``m``
  the labels a flip may give: 1 for binary tasks, ``C - 1`` for ``C`` classes).
* :func:`sampled_hull` is an *inner* bound for the continuous models (bounded poisoning
  with ``eps`` / ``nu``, substitution) and for budgets too large to enumerate: random
  subsets of ``<= k`` samples moved to random corners / points of their allowed box, plus
  one linearised attack per parameter and direction (:mod:`.attack`).

Runs are vectorised over perturbations (:mod:`.batched`); the runs that attain a bound are
then replayed through the reference :meth:`TrainingRun.train`, and the reported bounds are
those replayed values, so every bound is reached by a reference run on a named data set.
"""
from __future__ import annotations

import itertools
import logging
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InputError
from .batched import chunk_size, train_many
from .instance import PerturbationConfig
from .perturb import (NOMINAL, check_perturbation, flipped_labels, label_space, replay, stack,
                      used_samples)
from .run import TrainingRun

log = logging.getLogger(__name__)


@dataclass
class Hull:
    """Per-parameter ``[lower, upper]`` over the runs tried; ``argmin[j]`` / ``argmax[j]``
    describe the data set that attains ``lower[j]`` / ``upper[j]`` (:mod:`.perturb`)."""

    lower: np.ndarray          # (P,)
    upper: np.ndarray          # (P,)
    argmin: list
    argmax: list
    n_runs: int
    seconds: float
    exact: bool                # True only when every admissible perturbation was run
    nominal: np.ndarray | None = None
    perturbation: dict = field(default_factory=dict)
    replay_diff: float = 0.0   # max |vectorised - reference| over the replayed runs

    @property
    def total_width(self) -> float:
        return float(np.sum(self.upper - self.lower))

    def contains(self, theta: np.ndarray, tol: float = 0.0) -> bool:
        """Whether ``theta`` ``(P,)`` lies in the hull (widened by ``tol``)."""
        return bool(np.all(self.lower - tol <= theta) and np.all(theta <= self.upper + tol))

    def within(self, lower: np.ndarray, upper: np.ndarray, tol: float = 0.0) -> np.ndarray:
        """Per parameter, whether the hull lies inside the box ``[lower - tol, upper + tol]``:
        a certified box must give all True (a False is a run it wrongly excludes)."""
        return (np.asarray(lower) - tol <= self.lower) & (self.upper <= np.asarray(upper) + tol)

    def as_json(self) -> dict:
        return {"lower": self.lower.tolist(), "upper": self.upper.tolist(),
                "argmin": self.argmin, "argmax": self.argmax, "n_runs": self.n_runs,
                "seconds": self.seconds, "exact": self.exact, "total_width": self.total_width,
                "nominal": None if self.nominal is None else self.nominal.tolist(),
                "perturbation": self.perturbation, "replay_diff": self.replay_diff}


class _Accumulator:
    """Running per-parameter min / max over chunks of runs, with the attaining description."""

    def __init__(self, P: int):
        self.lower = np.full(P, np.inf)
        self.upper = np.full(P, -np.inf)
        self.argmin: list = [None] * P
        self.argmax: list = [None] * P
        self.n_runs = 0

    def add(self, thetas: np.ndarray, descs: list[dict]) -> None:
        self.n_runs += len(descs)
        i_lo, i_hi = thetas.argmin(axis=0), thetas.argmax(axis=0)
        cols = np.arange(thetas.shape[1])
        v_lo, v_hi = thetas[i_lo, cols], thetas[i_hi, cols]
        for j in np.flatnonzero(v_lo < self.lower):
            self.lower[j], self.argmin[j] = v_lo[j], descs[i_lo[j]]
        for j in np.flatnonzero(v_hi > self.upper):
            self.upper[j], self.argmax[j] = v_hi[j], descs[i_hi[j]]

    def hull(self, run: TrainingRun, pert: PerturbationConfig, t0: float, exact: bool) -> Hull:
        """Replay the attaining data sets through the reference run; report those values."""
        cache: dict[str, np.ndarray] = {}
        diff = 0.0
        for bound, descs in ((self.lower, self.argmin), (self.upper, self.argmax)):
            for j, d in enumerate(descs):
                key = repr(d)
                if key not in cache:
                    cache[key] = replay(run, d)
                v = cache[key][j]
                diff = max(diff, abs(v - bound[j]) / max(1.0, abs(v)))
                bound[j] = v
        if diff > 1e-8:
            log.warning("vectorised and reference runs differ by %.3g (relative)", diff)
        nominal = cache.get(repr(NOMINAL))
        return Hull(lower=self.lower.copy(), upper=np.maximum(self.upper, self.lower),
                    argmin=list(self.argmin), argmax=list(self.argmax), n_runs=self.n_runs,
                    seconds=time.perf_counter() - t0, exact=exact,
                    nominal=run.train() if nominal is None else nominal,
                    perturbation=asdict(pert), replay_diff=float(diff))


def _run_chunks(run: TrainingRun, descs_iter, kind: str, acc: _Accumulator,
                total: int | None = None) -> None:
    """Train every description of ``descs_iter`` in vectorised chunks into ``acc``."""
    per_run_data = kind in ("bounded", "substitution")
    size = chunk_size(run, per_run_data)
    done, last = 0, time.perf_counter()
    while True:
        chunk = list(itertools.islice(descs_iter, size))
        if not chunk:
            return
        nominal = [d for d in chunk if d.get("nominal")]
        other = [d for d in chunk if not d.get("nominal")]
        if nominal:
            acc.add(run.train()[None, :], nominal)
        if other:
            X, Y, Wt = stack(run, other, kind)
            acc.add(train_many(run, X=X, Y=Y, Wt=Wt), other)
        done += len(chunk)
        if time.perf_counter() - last > 2.0:
            last = time.perf_counter()
            log.info("hull: %d%s runs", done, f" / {total}" if total else "")


def enumeration_count(run: TrainingRun, pert: PerturbationConfig) -> int:
    """How many data sets :func:`enumerate_hull` trains on (the nominal one included)."""
    if pert.is_zero:
        return 1
    n = len(used_samples(run))
    m = 1 if pert.kind == "removal" else len(flipped_labels(run, _some_label(run)))
    return sum(math.comb(n, j) * m ** j for j in range(min(pert.k, n) + 1))


def _some_label(run: TrainingRun) -> float:
    space, _ = label_space(run)
    return 0.0 if space == "classes" else float(run.y[0])


def _is_discrete(pert: PerturbationConfig) -> bool:
    if pert.is_zero or pert.kind in ("label_flip", "removal"):
        return True
    return pert.kind == "bounded" and pert.eps == 0 and pert.nu == 0


def _enumerate_descs(run: TrainingRun, pert: PerturbationConfig):
    yield NOMINAL
    if pert.is_zero:
        return
    U = used_samples(run).tolist()
    for j in range(1, min(pert.k, len(U)) + 1):
        for combo in itertools.combinations(U, j):
            if pert.kind == "removal":
                yield {"kind": "removal", "samples": list(combo)}
                continue
            for labels in itertools.product(*[flipped_labels(run, run.y[i]) for i in combo]):
                yield {"kind": pert.kind, "samples": list(combo), "labels": list(labels)}


def enumerate_hull(run: TrainingRun, pert: PerturbationConfig, max_runs: int = 200_000) -> Hull:
    """The exact reachable hull of a discrete perturbation model (label flips, removals,
    ``bounded`` with flips only): train on every subset of size ``0..k`` of the samples
    that appear in some batch, with every label a flip may give, nominal run included."""
    if not _is_discrete(pert):
        raise InputError(f"kind = {pert.kind!r} with eps = {pert.eps}, nu = {pert.nu} is "
                         "continuous and cannot be enumerated: use sampled_hull for an inner "
                         "bound")
    check_perturbation(run, pert)
    count = enumeration_count(run, pert)
    if count > max_runs:
        raise InputError(f"exact enumeration needs {count} training runs (k = {pert.k}) but "
                         f"max_runs = {max_runs}: lower k, raise max_runs, or use "
                         "sampled_hull for an inner bound")
    t0 = time.perf_counter()
    acc = _Accumulator(run.n_params)
    kind = "removal" if pert.kind == "removal" else "label_flip"
    _run_chunks(run, _enumerate_descs(run, pert), kind, acc, total=count)
    assert acc.n_runs == count, (acc.n_runs, count)
    return acc.hull(run, pert, t0, exact=True)


def random_descs(run: TrainingRun, pert: PerturbationConfig, n: int, rng: np.random.Generator):
    """``n`` random admissible perturbations: ``k`` samples half of the time, else 1..k;
    features at a random corner of their box 3 times in 4 (else uniform inside); flips with
    probability 1/2; substitution: points in the data's feature range, any label."""
    U = used_samples(run)
    space, C = label_space(run)
    lo, hi = run.X.min(axis=0), run.X.max(axis=0)
    for _ in range(n):
        s = pert.k if rng.random() < 0.5 else int(rng.integers(1, pert.k + 1))
        idx = np.sort(rng.choice(U, size=min(s, len(U)), replace=False))
        d = {"kind": pert.kind, "samples": idx.tolist()}
        if pert.kind == "removal":
            yield d
            continue
        y = run.y[idx].copy()
        if pert.kind == "substitution":
            corner = rng.random((len(idx), 1)) < 0.5
            u = rng.random((len(idx), run.X.shape[1]))
            x = np.where(corner, np.where(u < 0.5, lo, hi), lo + u * (hi - lo))
            y = _random_labels(run, space, C, len(idx), rng)
        else:
            x = run.X[idx]
            if pert.eps > 0:
                sign = rng.choice((-1.0, 1.0), size=x.shape)
                step = np.where(rng.random((len(idx), 1)) < 0.75, sign,
                                rng.uniform(-1.0, 1.0, size=x.shape))
                x = x + pert.eps * step
            if pert.nu > 0:
                y = y + pert.nu * np.where(rng.random(len(idx)) < 0.75,
                                           rng.choice((-1.0, 1.0), size=len(idx)),
                                           rng.uniform(-1.0, 1.0, size=len(idx)))
            if _flips(pert):
                for r, i in enumerate(idx):
                    if pert.kind == "label_flip" or rng.random() < 0.5:
                        y[r] = rng.choice(flipped_labels(run, run.y[i]))
        if pert.kind == "substitution" or pert.eps > 0:
            d["x"] = x.tolist()
        d["labels"] = y.tolist()
        yield d


def _flips(pert: PerturbationConfig) -> bool:
    return pert.flips or pert.kind == "label_flip"


def _random_labels(run, space, C, m, rng):
    if space == "pm1":
        return rng.choice((-1.0, 1.0), size=m)
    if space in ("binary01", "classes"):
        return rng.integers(0, C, size=m).astype(np.float64)
    return rng.uniform(run.y.min(), run.y.max(), size=m)


def sampled_hull(run: TrainingRun, pert: PerturbationConfig, n_samples: int, seed: int = 0,
                 attack: bool = True, local_steps: int = 5) -> Hull:
    """An inner bound of the reachable hull (``exact = False`` unless the perturbation is
    zero): the nominal run, ``n_samples`` random perturbations (:func:`random_descs`) and,
    with ``attack``, linearised and greedy attacks for each parameter and direction
    (:func:`.attack.attack_descs`), then up to ``local_steps`` hill-climbing moves from the
    best data set per parameter and direction (:func:`.localsearch.hill_climb`). Attacks
    and hill climbing are skipped above :data:`.attack.MAX_ATTACK_PARAMS` parameters."""
    check_perturbation(run, pert)
    if n_samples < 0:
        raise InputError(f"n_samples = {n_samples} must be >= 0")
    t0 = time.perf_counter()
    acc = _Accumulator(run.n_params)
    acc.add(run.train()[None, :], [NOMINAL])
    if not pert.is_zero:
        rng = np.random.default_rng(seed)
        kind = pert.kind
        _run_chunks(run, random_descs(run, pert, n_samples, rng), kind, acc, total=n_samples)
        if attack:
            from .attack import MAX_ATTACK_PARAMS, attack_descs
            from .localsearch import hill_climb

            def evaluate(descs):
                X, Y, Wt = stack(run, descs, kind)
                thetas = train_many(run, X=X, Y=Y, Wt=Wt)
                acc.add(thetas, descs)
                return thetas

            descs = attack_descs(run, pert, evaluate=evaluate)
            if descs:
                _run_chunks(run, iter(descs), kind, acc)
            if local_steps > 0 and run.n_params <= MAX_ATTACK_PARAMS:
                for j in range(run.n_params):
                    for sign, start, value in ((1.0, acc.argmax, acc.upper),
                                               (-1.0, acc.argmin, acc.lower)):
                        hill_climb(run, pert, start[j], j, sign, sign * value[j], evaluate,
                                   rng, local_steps)
    return acc.hull(run, pert, t0, exact=pert.is_zero)


def attains(hull: Hull, lower: np.ndarray, upper: np.ndarray, rtol: float = 1e-4):
    """Per parameter, whether some perturbation of ``hull`` reaches the given bound:
    ``(hull.lower <= lower + tol, hull.upper >= upper - tol)`` with
    ``tol = rtol * max(|lower|, |upper|)`` per parameter (``(P,)`` bool arrays each)."""
    lower, upper = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    if lower.shape != hull.lower.shape or upper.shape != hull.upper.shape:
        raise InputError(f"bounds of shape {lower.shape} / {upper.shape} do not match the "
                         f"hull's {hull.lower.shape}")
    tol = rtol * np.maximum(np.abs(lower), np.abs(upper))
    return hull.lower <= lower + tol, hull.upper >= upper - tol
