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


def test_squared_loss_on_pm1_labels_counts_accuracy_by_the_sign():
    """Squared loss on +-1 labels is a classifier read by the sign of its output (as the
    stability test reads it), but the accuracy compared the raw output with the label and
    was 0 (found by fuzzing). Checked against sign(z) == y computed here."""
    import numpy as np

    from mipcert.agt.api import certificates_for
    from mipcert.agt.interval_agt import interval_agt
    from mipcert.network.training import logits

    from .helpers import build, small_doc

    doc = small_doc("hinge", kind="label_flip", k=1)
    doc["training"]["loss"] = "squared"
    doc["training"]["lr"] = 0.05
    inst, data, run = build(doc)
    res = interval_agt(run, inst.perturbation)
    nominal = run.train()
    c = certificates_for(run, data, res.lower, res.upper, nominal)
    z = logits(nominal, run.layers, data.X_test)[:, 0]
    truth = float(np.mean(np.where(z > 0, 1.0, -1.0) == data.y_test))
    assert truth > 0.5
    assert c["nominal_accuracy"] == truth
    assert c["certified_accuracy"] <= truth
