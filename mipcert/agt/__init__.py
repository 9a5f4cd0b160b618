"""mipcert.agt: training-time certificates (Abstract Gradient Training, FORMULATIONS 3).

Interval AGT (:func:`interval_agt`) bounds every parameter vector an SGD run can reach
when its training data is perturbed (bounded poisoning, label flips, removal,
substitution); :func:`certify_instance` turns an instance file into that box and the
certificates it implies.
"""
from .api import AGTOutcome, certify_instance, train_instance
from .instance import Instance, PerturbationConfig, load_instance, parse_instance
from .interval_agt import AGTResult, interval_agt
from .run import TrainingRun, build_run

__all__ = ["AGTOutcome", "AGTResult", "Instance", "PerturbationConfig", "TrainingRun",
           "build_run", "certify_instance", "interval_agt", "load_instance", "parse_instance",
           "train_instance"]
