"""``nowcast report``: several forecasts scored on one store and protocol, as tables, figures and GIFs.

Modules: :mod:`~nowcast_pl.report.sources` (what can be compared), :mod:`~nowcast_pl.report.evaluate`
(scoring), :mod:`~nowcast_pl.report.tables`, :mod:`~nowcast_pl.report.figures` and the command in
:mod:`~nowcast_pl.report.cli`. Nothing is imported here, so the task module can use the figures without cycles.
"""
