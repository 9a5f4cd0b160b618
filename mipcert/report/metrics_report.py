"""Table, CSV and plot of a :class:`~mipcert.verify.metrics.MetricsResult`.

Table: one row per radius with the three metrics of ``papers/004_*`` (satisfaction <=
security, satisfaction <= accuracy), the points the verifier left undecided and the
soundness conflicts. Plot (matplotlib, Agg, PNG, written atomically): the three metrics
against the radius.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from ..errors import InputError
from .plot import save_png_atomic
from .table import _plain_table

HEADERS = ["eps", "points", "satisfaction", "security", "accuracy", "undecided", "conflicts",
           "total s"]


def metrics_table(result) -> str:
    """The per-radius table as plain text, with a title and a footer."""
    rows = [[f"{s['eps']:g}", str(s["points"]), f"{s['satisfaction']:.3f}",
             f"{s['security']:.3f}", f"{s['accuracy']:.3f}", str(s["undecided"]),
             str(s["conflicts"]), f"{s['seconds']:.2f}"] for s in result.summary()]
    foot = [f"satisfaction: proved by the exact verifier; security: no violation found by PGD; "
            f"accuracy: mean fraction of {result.samples} uniform samples per point that satisfy "
            "the property",
            f"total {result.seconds:.1f} s"]
    if result.conflicts:
        foot.append(f"SOUNDNESS CONFLICTS (eps, point): {result.conflicts}")
    title = f"{result.name}: {result.prop} metrics"
    return _plain_table(HEADERS, rows, title) + "\n\n" + "\n".join(foot) + "\n"


def metrics_csv(result) -> str:
    """One CSV row per radius and point."""
    rows = result.rows()
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()) if rows else ["eps", "index"],
                       lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def plot_metrics(result, path) -> Path:
    """Save the three metrics against the radius to ``path`` (PNG); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if not path.parent.exists():
        raise InputError(f"cannot write {path}: folder {path.parent} does not exist")
    summary = result.summary()
    eps = [s["eps"] for s in summary]
    fig, ax = plt.subplots(figsize=(7.0, 4.2), constrained_layout=True)
    for key, style in (("accuracy", ("s", "tab:green", 4.0)), ("security", ("^", "tab:blue", 2.6)),
                       ("satisfaction", ("o", "tab:red", 1.4))):
        marker, colour, width = style
        ax.plot(eps, [s[key] for s in summary], marker=marker, color=colour, lw=width,
                label=key)
    ax.set_xlabel("radius eps")
    ax.set_ylabel("fraction of points")
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(f"{result.name}: {result.prop}")
    return save_png_atomic(fig, path)
