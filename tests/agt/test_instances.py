"""The shipped instances: exhaustive single flips on the paper's SVM, privacy output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mipcert.agt import certify_instance

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_svm_every_single_label_flip_is_inside_the_box():
    o = certify_instance(ROOT / "instances/agt_moons_svm.toml")
    lo, hi = o.result.lower, o.result.upper
    run = o.run
    for i in range(len(run.y)):
        y = run.y.copy()
        y[i] = -y[i]
        theta = run.train(y=y)
        assert np.all(lo <= theta) and np.all(theta <= hi), i


@pytest.mark.slow
def test_private_prediction_report():
    o = certify_instance(ROOT / "instances/agt_blobs_private.toml")
    acc = o.privacy["accuracy"]
    assert len(acc) == len(o.instance.privacy.epsilons)
    # smooth sensitivity is never worse than 1 (global) per point
    assert all(0.0 <= r["mean_smooth_sensitivity"] <= 1.0 for r in acc)
    assert len(o.privacy["kstar"]) == o.certificates["n_test"]
