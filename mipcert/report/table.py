"""Tables of a :class:`~mipcert.verify.compare.CompareResult`: per-eps point tables, a summary,
CSV and JSON. Uses rich when it is installed (and ``use_rich`` allows), plain text otherwise.

Point table (one per eps), one row per test point::

    #  label  pred  nominal  attack  | ibp bound  ms | crown bound  ms | lp ... | milp ...

``nominal``: the margin ``min_{t != y} z_y - z_t`` at the test point itself; ``attack``: the
smallest margin the PGD attack found in the ball (an upper bound of the true minimum); each
method's ``bound`` is a proven lower bound of that minimum, followed by a status mark:
``+`` certified (bound > 0), ``x`` falsified, ``?`` open, ``m`` misclassified, ``!`` conflict.
"""
from __future__ import annotations

import csv
import io
import json
import math
import sys
from typing import TextIO

MARKS = {"certified": "+", "falsified": "x", "open": "?", "misclassified": "m", "conflict": "!"}
STYLES = {"certified": "green", "falsified": "red", "open": "yellow", "misclassified": "magenta",
          "conflict": "bold white on red"}
SUMMARY_COLUMNS = ("certified", "falsified", "open", "misclassified", "conflict")


def fmt_bound(v: float | None) -> str:
    """A bound with 4 decimals; ``-`` when nothing was proven."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "-inf" if v < 0 else "inf"
    return f"{v:+.4f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.0f}"


def point_table(result, eps: float) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Headers, cell texts and per-cell status (``""`` for non-method cells) for one eps."""
    headers = ["#", "label", "pred", "nominal", "attack"]
    for m in result.methods:
        headers += [f"{m} bound", f"{m} ms"]
    rows, status = [], []
    for p in result.at(eps):
        row = [str(p.index), str(p.label), str(p.predicted), f"{p.nominal_margin:+.4f}",
               fmt_bound(p.attack_margin)]
        st = ["", "", "", "", "falsified" if p.falsified and not p.misclassified else ""]
        for m in result.methods:
            r = p.methods[m]
            row += [f"{fmt_bound(r.bound)} {MARKS[r.status]}", fmt_ms(r.seconds)]
            st += [r.status, ""]
        rows.append(row)
        status.append(st)
    return headers, rows, status


def summary_table(result) -> tuple[list[str], list[list[str]]]:
    """One row per eps and method: status counts, total and mean time."""
    headers = ["eps", "method", *SUMMARY_COLUMNS, "stable ReLUs", "total s", "mean ms"]
    rows = []
    for s in result.summary():
        stable = "-" if s.get("mean_stable") is None else f"{s['mean_stable']:.1f}"
        rows.append([f"{s['eps']:g}", s["method"], *(str(s[c]) for c in SUMMARY_COLUMNS),
                     stable, f"{s['seconds']:.3f}", fmt_ms(s["mean_seconds"])])
    return headers, rows


def _title(result, eps: float) -> str:
    n = len(result.at(eps))
    return f"{result.name}: eps = {eps:g} ({n} points)"


def _plain_table(headers, rows, title: str | None = None) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [title] if title else []
    out += [line, "-" * len(line)]
    out += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(out)


def footer(result) -> str:
    lines = ["marks: + certified (bound > 0), x falsified (validated counterexample), ? open, "
             "m misclassified, ! conflict (a soundness bug)",
             "ibp/crown ms: batch time / number of points; lp ms: its solves plus the crown "
             "share; milp: the verifier's own time (stops once the bound passes 0)",
             "stable ReLUs: mean number of ReLUs the method's bounds prove stable (no binary "
             f"needed), out of {result.relus}" if getattr(result, "relus", None) else
             "stable ReLUs: mean number of ReLUs the method's bounds prove stable",
             f"total {result.seconds:.1f} s"]
    if result.conflicts:
        lines.append(f"SOUNDNESS CONFLICTS: {result.conflicts}")
    return "\n".join(lines)


def render_plain(result) -> str:
    """All tables as plain text."""
    parts = []
    for eps in result.eps:
        h, rows, _ = point_table(result, eps)
        parts.append(_plain_table(h, rows, _title(result, eps)))
    h, rows = summary_table(result)
    parts.append(_plain_table(h, rows, f"{result.name}: summary"))
    parts.append(footer(result))
    return "\n\n".join(parts) + "\n"


def _have_rich() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def render(result, file: TextIO | None = None, use_rich: bool | None = None) -> None:
    """Print every point table and the summary to ``file`` (default stdout)."""
    file = file or sys.stdout
    if use_rich is False or (use_rich is None and not _have_rich()):
        file.write(render_plain(result))
        return
    from rich.console import Console
    from rich.table import Table

    con = Console(file=file, width=160, highlight=False)
    for eps in result.eps:
        h, rows, status = point_table(result, eps)
        tab = Table(title=_title(result, eps), title_justify="left")
        for name in h:
            tab.add_column(name, justify="right", no_wrap=True)
        for row, st in zip(rows, status):
            tab.add_row(*[f"[{STYLES[s]}]{c}[/]" if s else c for c, s in zip(row, st)])
        con.print(tab)
    h, rows = summary_table(result)
    tab = Table(title=f"{result.name}: summary", title_justify="left")
    for name in h:
        tab.add_column(name, justify="right", no_wrap=True)
    for k, row in enumerate(rows):
        tab.add_row(*row, end_section=k + 1 < len(rows) and rows[k + 1][0] != row[0])
    con.print(tab)
    con.print(footer(result), highlight=False, markup=False)


def csv_text(result) -> str:
    """One CSV row per eps, point and method (see ``CompareResult.rows``)."""
    rows = result.rows()
    buf = io.StringIO()
    fields = list(rows[0].keys()) if rows else ["eps", "index", "method", "bound"]
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v)
                    for k, v in r.items()})
    return buf.getvalue()


def json_text(result, extra: dict | None = None) -> str:
    """The whole result as JSON (non-finite numbers written as null)."""
    obj = result.to_json()
    if extra:
        obj.update(extra)
    return json.dumps(obj, indent=1, allow_nan=False) + "\n"
