"""Plot of a :class:`~mipcert.verify.compare.CompareResult` (matplotlib, Agg, PNG, atomic).

Top panel: the fraction of points each method certifies, against eps, with the fraction not
falsified (an upper bound of the robust accuracy: no method can certify more) as a dashed
line. Bottom row, one panel per eps: every method's margin bound per point (symlog scale,
markers per method), the attack's margin (an upper bound of the true minimum) as a black
bar, and the line ``margin = 0`` that separates certified from open.
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import InputError

MARKERS = {"ibp": ("v", "tab:orange"), "crown": ("^", "tab:blue"), "lp": ("s", "tab:green"),
           "milp": ("o", "tab:red")}
#: at most this many per-eps panels are drawn (evenly spread over the eps values)
MAX_PANELS = 6


def save_png_atomic(fig, path, dpi: int = 120, tight: bool = True) -> Path:
    """Save a matplotlib figure as PNG through a temporary file and a rename; closes it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        plt.close(fig)
    return path


def _finite(v) -> float:
    return np.nan if v is None or not math.isfinite(v) else float(v)


def plot_compare(result, path) -> Path:
    """Save the comparison plot of ``result`` to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    eps_all = result.eps
    idx = np.unique(np.linspace(0, len(eps_all) - 1, min(len(eps_all), MAX_PANELS)).round()
                    .astype(int))
    panels = [eps_all[i] for i in idx]
    ncol = len(panels)
    fig = plt.figure(figsize=(max(8.0, 3.6 * ncol), 8.0), constrained_layout=True)
    grid = fig.add_gridspec(2, ncol, height_ratios=[1.0, 1.3])
    ax = fig.add_subplot(grid[0, :])
    _fraction_panel(ax, result)
    for k, eps in enumerate(panels):
        _bounds_panel(fig.add_subplot(grid[1, k]), result, eps, first=k == 0)
    fig.suptitle(f"{result.name}: margin bounds by method", fontsize=13)
    return save_png_atomic(fig, path, dpi=110, tight=False)


def _fraction_panel(ax, result) -> None:
    summary = result.summary()
    eps = np.array(result.eps)
    # wider lines first and underneath, so methods that coincide stay visible
    width = {m: 1.4 + 0.9 * k for k, m in enumerate(result.methods)}
    for m in result.methods:
        rows = [s for s in summary if s["method"] == m]
        frac = [s["certified"] / max(s["points"], 1) for s in rows]
        marker, color = MARKERS.get(m, ("o", None))
        ax.plot(eps, frac, marker=marker, color=color, label=f"{m} certified", lw=width[m],
                ms=3 + 2 * width[m], alpha=0.85, zorder=10 - width[m])
    first = result.methods[0]
    upper = [1 - (s["falsified"] + s["misclassified"]) / max(s["points"], 1)
             for s in summary if s["method"] == first]
    ax.plot(eps, upper, "k--", lw=1.2, label="not falsified (upper bound)")
    ax.set_xlabel("eps (l_inf radius)")
    ax.set_ylabel("fraction of points")
    ax.set_ylim(-0.03, 1.03)
    ax.set_xticks(eps)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=9, ncol=2)


def _bounds_panel(ax, result, eps: float, first: bool) -> None:
    pts = result.at(eps)
    x = np.arange(len(pts))
    nm = max(len(result.methods), 1)
    offsets = np.linspace(-0.25, 0.25, nm) if nm > 1 else [0.0]
    for off, m in zip(offsets, result.methods):
        y = np.array([_finite(p.methods[m].bound) for p in pts])
        marker, color = MARKERS.get(m, ("o", None))
        ax.scatter(x + off, y, marker=marker, color=color, s=22, label=m, zorder=3)
    att = np.array([_finite(p.attack_margin) for p in pts])
    ax.scatter(x, att, marker="_", color="k", s=120, label="attack", zorder=4)
    bad = [i for i, p in enumerate(pts) if p.misclassified or p.falsified]
    for i in bad:
        ax.axvspan(i - 0.45, i + 0.45, color="0.85", zorder=0)
    ax.axhline(0.0, color="k", lw=0.8)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(f"eps = {eps:g}")
    ax.set_xlabel("test point (grey: falsified / misclassified)")
    step = max(1, len(pts) // 10)
    ax.set_xticks(x[::step], [str(p.index) for p in pts][::step])
    ax.grid(alpha=0.3, axis="y")
    if first:
        ax.set_ylabel("margin bound (symlog)")
        ax.legend(fontsize=8, loc="lower right")
