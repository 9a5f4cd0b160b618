"""Where a 2-D model's predictions are certified stable (as the paper's Figure 7).

A grid over the raw 2-D input plane is mapped through the instance's feature map; each
grid point is coloured by its nominal class where the prediction is certified stable over
the parameter box, and grey where it is not. Written atomically as PNG.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError


def plot_certified_regions(outcome, path, resolution: int = 200) -> Path:
    """Save the certified-stable regions of a 2-D instance to ``path`` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..agt.certify import logit_bounds, stable_mask
    from ..network import training as ref

    data, run = outcome.data, outcome.run
    if data.raw_dim != 2:
        raise InputError(f"--plot needs 2-D raw inputs (moons, blobs); this data has "
                         f"{data.raw_dim} features")
    raw = data.raw_train
    pad = 0.15 * (raw.max(0) - raw.min(0))
    lo, hi = raw.min(0) - pad, raw.max(0) + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                         np.linspace(lo[1], hi[1], resolution))
    G = np.stack([gx.ravel(), gy.ravel()], axis=1)
    Xg = data.transform(G)
    z_nom = ref.logits(outcome.nominal, run.layers, Xg)
    zl, zu = logit_bounds(outcome.result.lower, outcome.result.upper, run.layers, Xg,
                          outcome.device)
    stable = stable_mask(zl, zu, z_nom)
    cls = (z_nom[:, 0] > 0).astype(float) if z_nom.shape[1] == 1 else z_nom.argmax(1)
    img = np.where(stable, cls, np.nan).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.contourf(gx, gy, np.isnan(img).astype(float), levels=[0.5, 1.5], colors=["0.8"])
    ax.pcolormesh(gx, gy, np.ma.masked_invalid(img), cmap="coolwarm", alpha=0.45,
                  shading="auto")
    ax.contour(gx, gy, (cls.reshape(gx.shape)), levels=[0.5], colors="k", linewidths=1)
    ax.scatter(raw[:, 0], raw[:, 1], c=data.y_train, cmap="coolwarm", s=6, edgecolors="none")
    p = outcome.instance.perturbation
    ax.set_title(f"{outcome.instance.name}: certified stable regions ({p.kind}, k={p.k}); "
                 f"grey = not certified", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png.tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=120, format="png", bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
