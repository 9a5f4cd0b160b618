"""mipcert.agt: training-time certificates (Abstract Gradient Training, FORMULATIONS 3).

Interval AGT (:func:`interval_agt`) bounds every parameter vector an SGD run can reach
when its training data is perturbed (bounded poisoning, label flips, removal,
substitution); :func:`certify_instance` turns an instance file into that box and the
certificates it implies. :func:`enumerate_hull` (exact, discrete perturbations) and
:func:`sampled_hull` (attacks, an inner bound) give the parameters perturbed runs really
reach: the ground truth every certified box must contain.
"""
from .api import AGTOutcome, certify_instance, train_instance
from .enumerate import Hull, attains, enumerate_hull, sampled_hull
from .instance import Instance, PerturbationConfig, load_instance, parse_instance
from .interval_agt import AGTResult, interval_agt
from .run import TrainingRun, build_run

__all__ = ["AGTOutcome", "AGTResult", "Hull", "Instance", "PerturbationConfig", "TrainingRun",
           "attains", "build_run", "certify_instance", "enumerate_hull", "interval_agt",
           "load_instance", "parse_instance", "sampled_hull", "train_instance"]
