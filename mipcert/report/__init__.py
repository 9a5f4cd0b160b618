"""mipcert.report: tables, plots and JSON of results (rich and matplotlib are imported lazily).

- :mod:`mipcert.report.table`: ``render`` / ``render_plain`` / ``csv_text`` / ``json_text`` of a
  :class:`~mipcert.verify.compare.CompareResult`;
- :mod:`mipcert.report.plot`: ``plot_compare`` (certified fraction vs eps, bounds per point);
- :mod:`mipcert.report.agt_plot`: certified regions of a 2-D AGT instance.
"""
