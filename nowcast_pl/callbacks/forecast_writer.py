"""``ForecastWriter``: streams ``nowcast predict`` output to a CF Zarr store (and optionally pysteps NetCDF).

The store's layout is described in :mod:`nowcast_pl.data.forecast_store`: ``forecast (init_time, member,
lead_time, y, x)`` in the data's physical units, with the source store's georeferencing carried to the model
grid. Each batch is written when it is forecast and the trainer is told not to keep predictions, so memory
stays bounded by one batch whatever the size of the predict split. Under DDP every rank writes its own
windows into the rows given by their window index, one chunk per window, so no two ranks touch a chunk.

The store is written as ``<output>.partial`` and, once every rank has written its windows (a barrier), rank 0
marks it complete and puts it at ``output``, replacing the previous forecast only then
(:func:`nowcast_pl.data.forecast_store.finish_forecast_store`). A killed run leaves the previous store as it
was (and a ``.partial`` that the next run replaces). The final path is logged in one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import zarr
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from nowcast_pl.callbacks.test_outputs import _run_dir
from nowcast_pl.data.forecast_store import (
    create_forecast_store,
    finish_forecast_store,
    open_forecast_array,
    partial_path,
    write_netcdf,
)
from nowcast_pl.data.georef import ModelGrid, model_grid


class ForecastWriter(BasePredictionWriter):
    """Write forecasts of every predict batch to ``output`` (default ``<log_dir>/forecast.zarr``).

    Args:
        output: path of the Zarr store to create (replaced if it exists, once the new one is complete).
        netcdf: also write one pysteps NetCDF file per window (``pysteps.io.exporters``; the format pysteps
            and blending tools read) into ``<output without .zarr>_netcdf/``. Needs a store with a
            projection and y/x coordinates, in mm h-1, mm or dBZ.
    """

    def __init__(self, output: str | None = None, netcdf: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.netcdf = netcdf
        self.path: Path | None = None
        self._forecast: zarr.Array | None = None
        self._netcdf: dict[str, Any] | None = None

    def _resolve_path(self, trainer: pl.Trainer) -> Path:
        if self.output is not None:
            return Path(self.output)
        return _run_dir(trainer) / "forecast.zarr"

    @property
    def netcdf_folder(self) -> Path | None:
        """Folder of the NetCDF files (None before predict starts)."""
        return None if self.path is None else self.path.with_name(self.path.name.removesuffix(".zarr") + "_netcdf")

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Forecasts are on disk; keeping them in the trainer too would grow memory with the predict split.
        trainer.predict_loop.return_predictions = False

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = self._resolve_path(trainer)
        datamodule = trainer.datamodule
        grid = model_grid(datamodule.store, datamodule.frame_size, datamodule.resize_method)
        units = pl_module.hparams.units
        if self.netcdf:
            self._netcdf = {"metadata": grid.pysteps_metadata(units),
                            "institution": _store_attrs(datamodule.store.attrs)["institution"]}
        if trainer.is_global_zero:
            n_leads, _, h, w = datamodule.datasets["predict"][0]["targets"].shape
            self.path.parent.mkdir(parents=True, exist_ok=True)
            create_forecast_store(partial_path(self.path), init_times=datamodule.init_times("predict"),
                                  members=pl_module.effective_members(pl_module.predict_members),
                                  lead_minutes=self.lead_minutes(pl_module, n_leads), grid=grid, shape=(h, w),
                                  units=units, attrs=self._attrs(datamodule, pl_module, grid))
        trainer.strategy.barrier()
        self._forecast = open_forecast_array(partial_path(self.path))

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every rank has written its windows once all reach the barrier; only then is the store put in place.
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            finish_forecast_store(partial_path(self.path), self.path)
            rank_zero_info(f"nowcast predict: forecast written to {self.path}")
        trainer.strategy.barrier()

    @staticmethod
    def lead_minutes(pl_module: pl.LightningModule, n_leads: int) -> np.ndarray:
        return np.round(np.arange(1, n_leads + 1) * pl_module.hparams.time_step_minutes).astype(np.int64)

    @staticmethod
    def _attrs(datamodule: Any, pl_module: pl.LightningModule, grid: ModelGrid) -> dict[str, Any]:
        store = datamodule.store
        model = type(pl_module).__name__
        return {**_store_attrs(store.attrs), "title": f"{model} forecast of {store.attrs['title']}",
                "model": model, "quantity": store.encoding.quantity, "source_store": str(store.path),
                "value_range": list(pl_module.value_range), "projection": grid.projection,
                "frame_size": list(datamodule.frame_size or store.frame_shape),
                "resize_method": datamodule.resize_method}

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        forecast = trainer.datamodule.to_physical(prediction["forecast"].float().cpu().numpy()[:, :, :, 0])
        windows = prediction["window"].cpu().numpy()
        for i, row in enumerate(windows):
            self._forecast[row] = forecast[i]
        if self._netcdf is not None:
            leads = self.lead_minutes(pl_module, forecast.shape[2])
            for i, (row, init) in enumerate(zip(windows, prediction["init_time"].cpu().numpy(), strict=True)):
                write_netcdf(self.netcdf_folder, window=int(row), init_time=int(init), forecast=forecast[i],
                             lead_minutes=leads, **self._netcdf)


def _store_attrs(attrs: dict[str, Any]) -> dict[str, str]:
    """CF global attributes inherited from the source store."""
    return {"institution": str(attrs.get("institution") or attrs.get("source", "")),
            "source": f"nowcast_pl forecast from {attrs.get('source', '')}",
            "references": str(attrs.get("citation", "")), "licence": str(attrs.get("licence", ""))}
