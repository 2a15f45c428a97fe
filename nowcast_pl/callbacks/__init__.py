"""Callbacks that write a run's files, and those that make a fit resumable; the ``nowcast`` CLI adds all of them."""

from nowcast_pl.callbacks.forecast_writer import ForecastWriter
from nowcast_pl.callbacks.last_checkpoint import LastCheckpoint
from nowcast_pl.callbacks.preemption import PreemptionCheckpoint
from nowcast_pl.callbacks.random_state import RandomStateCheckpoint
from nowcast_pl.callbacks.test_outputs import TestMetricsWriter, TestPanelWriter

DEFAULT_CALLBACKS = (TestMetricsWriter, TestPanelWriter, ForecastWriter)
RESUME_CALLBACKS = (RandomStateCheckpoint, PreemptionCheckpoint)

__all__ = ["DEFAULT_CALLBACKS", "RESUME_CALLBACKS", "ForecastWriter", "LastCheckpoint", "PreemptionCheckpoint",
           "RandomStateCheckpoint", "TestMetricsWriter", "TestPanelWriter"]
