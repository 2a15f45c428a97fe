"""Callbacks that write a run's files; the ``nowcast`` CLI adds all of them to every run."""

from nowcast_pl.callbacks.forecast_writer import ForecastWriter
from nowcast_pl.callbacks.test_outputs import TestMetricsWriter, TestPanelWriter

DEFAULT_CALLBACKS = (TestMetricsWriter, TestPanelWriter, ForecastWriter)

__all__ = ["DEFAULT_CALLBACKS", "ForecastWriter", "TestMetricsWriter", "TestPanelWriter"]
