"""The Python face of ``mipcert agt`` and ``mipcert train``.

>>> from mipcert.agt import certify_instance
>>> outcome = certify_instance("instances/agt_moons_svm.toml")
>>> outcome.result.total_width, outcome.certificates["certified_accuracy"]
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..relaxation import AGT_METHODS as METHODS
from .certify import classification_certificates, regression_certificates
from .data import Dataset, load_dataset
from .instance import Instance, PerturbationConfig, load_instance
from .interval_agt import AGTResult, interval_agt
from .privacy import certified_distance, private_accuracy
from .run import TrainingRun, build_run

log = logging.getLogger(__name__)
#: losses whose gradient w.r.t. the logits is a box even in the exact methods
RELAXED_LOSSES = ("bce", "cross_entropy")
#: the paper's IBP total width for the half-moons SVM (Sosnin et al., table in section 8.2)
PAPER_SVM_IBP_WIDTH = 339.7


@dataclass
class AGTOutcome:
    instance: Instance
    data: Dataset
    run: TrainingRun
    nominal: np.ndarray
    result: AGTResult
    certificates: dict
    privacy: dict | None = None
    seconds: float = 0.0
    method: str = "ibp"
    device: str = "cpu"
    extra: dict = field(default_factory=dict)

    def widest(self, n: int = 5) -> list[tuple[str, float, float, float]]:
        """The ``n`` widest parameters: ``(name, lower, upper, width)``."""
        w = self.result.upper - self.result.lower
        names = self.run.param_names
        order = np.argsort(-w, kind="stable")[:n]
        return [(names[i], float(self.result.lower[i]), float(self.result.upper[i]),
                 float(w[i])) for i in order]

    def as_json(self) -> dict:
        certs = {k: v for k, v in self.certificates.items() if k != "stable_mask"}
        out = {"name": self.instance.name, "method": self.method, "device": self.device,
               "param_names": self.run.param_names, "param_nominal": self.nominal.tolist(),
               "param_lower": self.result.lower.tolist(),
               "param_upper": self.result.upper.tolist(),
               "total_width": self.result.total_width,
               "widest": [dict(zip(("name", "lower", "upper", "width"), w))
                          for w in self.widest()],
               "nominal_inside": self.result.contains(self.nominal),
               "width_per_step": self.result.widths,
               "seconds": self.seconds, "agt_seconds": self.result.seconds,
               "perturbation": asdict(self.instance.perturbation),
               "certificates": certs, "privacy": self.privacy}
        out.update(self.extra)
        out.update(self.run.as_json())
        out["X_test"] = self.data.X_test.tolist()
        out["y_test"] = self.data.y_test.tolist()
        return out


def _as_instance(instance) -> Instance:
    return instance if isinstance(instance, Instance) else load_instance(Path(instance))


def certificates_for(run: TrainingRun, data: Dataset, lower, upper, nominal,
                     device: str = "cpu") -> dict:
    """FORMULATIONS 3.6 on the test split (classification or regression)."""
    if run.loss == "squared" and data.n_classes is None:
        return regression_certificates(lower, upper, nominal, run, data.X_test, data.y_test,
                                       device)
    return classification_certificates(lower, upper, nominal, run, data.X_test, data.y_test,
                                       device)


def _privacy(inst: Instance, run: TrainingRun, data: Dataset, nominal, device) -> dict:
    if data.n_classes != 2 or run.loss == "squared":
        raise InputError("[privacy] private prediction is implemented for binary "
                         "classification (hinge or bce)")
    stable_by_k = {}
    for k in inst.privacy.k_values:
        if k > min(len(b) for b in run.batches):
            raise InputError(f"[privacy] k = {k} is larger than the smallest batch")
        res = interval_agt(run, replace(inst.perturbation, k=k), device)
        c = classification_certificates(res.lower, res.upper, nominal, run, data.X_test,
                                        data.y_test, device)
        stable_by_k[k] = c["stable_mask"]
    kstar = certified_distance(stable_by_k)
    from ..network.training import predict
    correct = predict(nominal, run.layers, data.X_test, run.loss) == data.y_test
    return {"k_values": list(inst.privacy.k_values),
            "certified_stable_by_k": {str(k): int(m.sum()) for k, m in stable_by_k.items()},
            "kstar": kstar.tolist(),
            "accuracy": [private_accuracy(correct, kstar, e) for e in inst.privacy.epsilons]}


def certify_instance(instance, method: str = "ibp", device: str = "cpu",
                     perturbation: PerturbationConfig | None = None, *, horizon="full",
                     solver: str | None = None, time_limit: float | None = None,
                     workers: int | None = None, scheduler: str | None = None,
                     faces: int = 0, progress=None, tighten: bool = True,
                     tighten_every: int = 1) -> AGTOutcome:
    """Certify the run an instance describes: the box, its certificates and (with
    ``[privacy]``) private prediction. ``perturbation`` overrides the file's.

    ``method``: ``ibp`` (interval AGT) or an optimisation method ``lp | qcp | milp | miqcp``
    (:func:`mipcert.agt.mip_agt.mip_agt`, with ``horizon``, ``solver``, ``time_limit`` per
    solve, ``workers`` / ``scheduler`` for the fan-out and ``faces`` polytope directions).
    """
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; available: {', '.join(METHODS)}")
    if faces < 0:
        raise InputError(f"--faces {faces}: give a number of directions >= 0")
    if faces and method == "ibp":
        raise InputError("--faces needs an optimisation method (lp, qcp, milp or miqcp)")
    t0 = time.perf_counter()
    inst = _as_instance(instance)
    if perturbation is not None:
        inst = replace(inst, perturbation=perturbation)
    data = load_dataset(inst.data)
    run = build_run(inst, data)
    nominal = run.train()
    interval = interval_agt(run, inst.perturbation, device)
    extra: dict = {}
    result = interval
    if method != "ibp":
        from .mip_agt import mip_agt
        from .polytope import face_directions
        dirs = face_directions(run, data.X_test, nominal, faces) if faces else None
        result = mip_agt(run, inst.perturbation, method, horizon, solver, time_limit, workers,
                         scheduler, faces, device, tighten=tighten, progress=progress,
                         face_dirs=dirs, tighten_every=tighten_every)
        extra.update(result.as_json())
        extra["interval_total_width"] = interval.total_width
        if run.loss in RELAXED_LOSSES:
            extra["relaxed_loss_gradient"] = (
                f"the {run.loss} loss gradient is encoded as a box from interval bounds: "
                f"the {method} bounds stay relaxed even for the exact methods")
    # rounding: the box and the numpy replay sum in different orders (a zero perturbation
    # gives a box of width 0 that may sit 1e-17 off the replay); beyond that it is a bug
    if not result.contains(nominal, tol=1e-9 * (1.0 + np.abs(nominal))):
        log.warning("the nominal parameters are outside the certified box: report this bug")
    certs = certificates_for(run, data, result.lower, result.upper, nominal, device)
    if method != "ibp" and result.faces and data.n_classes is not None:
        from .polytope import polytope_certificates
        pc = polytope_certificates(run, result.lower, result.upper, result.faces, nominal,
                                   data.X_test, data.y_test)
        pc.pop("polytope_stable_mask")
        certs.update(pc)
    if inst.perturbation.kind == "removal":
        certs["unlearning_k"] = inst.perturbation.k
        certs["certified_unchanged_by_unlearning"] = certs.get("certified_stable")
    priv = _privacy(inst, run, data, nominal, device) if inst.privacy is not None else None
    outcome = AGTOutcome(instance=inst, data=data, run=run, nominal=nominal, result=result,
                         certificates=certs, privacy=priv, method=method, device=device,
                         extra=extra)
    if inst.name == "moons_svm":
        outcome.extra["paper_ibp_total_width"] = PAPER_SVM_IBP_WIDTH
    outcome.seconds = time.perf_counter() - t0
    return outcome


def train_instance(instance) -> dict:
    """Replay only the nominal run: final parameters, test metrics and the run itself."""
    t0 = time.perf_counter()
    inst = _as_instance(instance)
    data = load_dataset(inst.data)
    run = build_run(inst, data)
    theta = run.train()
    certs = certificates_for(run, data, theta, theta, theta)
    metrics = {k: v for k, v in certs.items() if k.startswith(("nominal", "n_test"))}
    out = {"name": inst.name, "param_names": run.param_names, "param_nominal": theta.tolist(),
           "metrics": metrics, "seconds": time.perf_counter() - t0}
    out.update(run.as_json())
    return out
