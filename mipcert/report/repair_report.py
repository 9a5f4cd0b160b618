"""The before/after table of an adversary-correction experiment, and the pool plot.

Table columns (one row per network: original, each correction, the fine-tuning baselines)::

    network  clean  FGSM  FGSM gain  PGD  efficacy  drawdown  general.  viol.  cert/fals/open  s

``clean``/``FGSM``/``PGD``: test accuracy (%) on clean points and under white-box attacks at
the instance's eps on that network; ``FGSM gain``: FGSM accuracy minus the original's (pp;
the last row is the paper's claim, :data:`PAPER`, for comparison); ``efficacy``: share of the given adversarial points now
classified correctly; ``drawdown``: clean test accuracy lost (pp); ``general.``: accuracy on
the test points' adversarial examples made against the original network (points not in the
set); ``viol.``: margins below delta on the adversarial set; ``cert``: MILP verdicts of the
first n test points at eps_cert; ``s``: seconds to produce the network.
"""
from __future__ import annotations

from pathlib import Path

from .plot import save_png_atomic

HEADERS = ["network", "clean %", "FGSM %", "FGSM gain pp", "PGD %", "efficacy %", "drawdown pp",
           "general. %", "viol.", "cert/fals/open", "s", "status"]
#: Zhao & Kronqvist's headline (arXiv 2409.13770), shown under every table
PAPER = {"network": "paper: MNIST CNN, 10 FGSM examples", "fgsm_gain": ">= +40",
         "drawdown": "small", "source": "Zhao & Kronqvist 2024, arXiv 2409.13770"}


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def table_rows(report) -> list[list[str]]:
    out = []
    base = next((r.get("fgsm_acc") for r in report.rows if r["network"] == "original"), None)
    for r in report.rows:
        c = r.get("certify")
        cert = "-" if c is None else f"{c['certified']}/{c['falsified']}/{c['open']}"
        gain = ("-" if base is None or r.get("fgsm_acc") is None
                else f"{100 * (r['fgsm_acc'] - base):+.1f}")
        out.append([r["network"], _pct(r.get("clean_acc")), _pct(r.get("fgsm_acc")), gain,
                    _pct(r.get("pgd_acc")), _pct(r.get("efficacy")),
                    "-" if r.get("drawdown") is None else f"{100 * r['drawdown']:+.1f}",
                    _pct(r.get("generalisation")),
                    "-" if r.get("violated") is None else str(r["violated"]),
                    cert, f"{r['seconds']:.1f}", r.get("status", "")])
    out.append([PAPER["network"], "-", "-", PAPER["fgsm_gain"], "-", "-", PAPER["drawdown"],
                "-", "-", "-", "-", ""])
    return out


def render_table(report) -> str:
    """Plain-text table (see the module doc) with a title line."""
    inst = report.instance
    rows = table_rows(report)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)]
    line = "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    title = (f"{inst['name']}: {inst['n_adv']} {inst['attack']} adversarial examples at "
             f"eps = {inst['eps']}, layers = {inst['layers']}, delta = {inst['delta']}, "
             f"rho = {inst['rho']}, omega = {inst['omega']}; certified at eps_cert = "
             f"{inst['eps_cert']} on {inst['n_points']} test points")
    return "\n".join([title, line, "-" * len(line), *body])


def plot_pool(report, path, omegas=(0.0, 0.2, 0.4)) -> Path:
    """Violation ``V`` against clean loss ``L`` of every pool member (one series per
    objective), with the picks for ``omegas`` marked; written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    markers = {0.0: "o", 0.2: "s", 0.4: "^"}
    for k, (norm, res) in enumerate(report.corrections.items()):
        if not res.pool:
            continue
        L = [p.loss for p in res.pool]
        V = [p.violation for p in res.pool]
        ax.plot(L, V, ".-", alpha=0.6, label=f"pool ({norm}, rounds 1..{len(res.pool)})")
        for o in omegas:
            i = res.pick_index(o)
            ax.scatter([L[i]], [V[i]], s=90, facecolors="none", edgecolors="k",
                       marker=markers.get(o, "D"), label=f"pick omega={o} ({norm})")
        ax.axvline(res.loss_bound, color="0.5", ls="--", lw=0.8)
        ax.scatter([res.loss0], [res.violation0], c="r", marker="x",
                   label="original w0" if k == 0 else None)
    ax.set_xlabel("clean loss L(w)  (dashed: (1 + rho) L(w0))")
    ax.set_ylabel("violation V(w) on the adversarial set")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title(f"{report.instance['name']}: correction pool", fontsize=9)
    ax.legend(fontsize=7)
    return save_png_atomic(fig, path)
