"""``ForecastWriter``: writes ``nowcast predict`` output to a Zarr store readable with ``xarray.open_zarr``.

Layout: ``forecast (init_time, member, lead_time, y, x)`` float32 in the data's physical units (NaN where
not written), with coordinates ``init_time`` (UTC of the last observed frame), ``lead_time`` (minutes) and
``member``. Under DDP every rank writes its own samples into the rows given by their window index, one
chunk per sample, so no two ranks touch the same chunk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import zarr
from lightning.pytorch.callbacks import BasePredictionWriter

from nowcast_pl.data.schema import TIME_UNITS


class ForecastWriter(BasePredictionWriter):
    """Write forecasts of every predict batch to ``output`` (default ``<log_dir>/forecast.zarr``).

    Args:
        output: path of the Zarr store to create (replaced if it exists).
    """

    def __init__(self, output: str | None = None) -> None:
        super().__init__(write_interval="batch")
        self.output = output
        self.path: Path | None = None
        self._forecast: zarr.Array | None = None

    def _resolve_path(self, trainer: pl.Trainer) -> Path:
        if self.output is not None:
            return Path(self.output)
        root = trainer.log_dir or trainer.default_root_dir
        return Path(root) / "forecast.zarr"

    def on_predict_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.path = self._resolve_path(trainer)
        if trainer.is_global_zero:
            datamodule = trainer.datamodule
            shape = tuple(datamodule.datasets["predict"][0]["targets"].shape)
            self._create(self.path, init_times=datamodule.init_times("predict"), shape=shape, pl_module=pl_module)
        trainer.strategy.barrier()
        self._forecast = zarr.open_group(str(self.path), mode="r+", zarr_format=3)["forecast"]

    def _create(self, path: Path, *, init_times: np.ndarray, shape: tuple[int, ...], pl_module: Any) -> None:
        hp = pl_module.hparams
        n_samples = init_times.size
        n_leads, _, h, w = shape
        members = pl_module.effective_members(pl_module.predict_members)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        group.attrs.update({"title": "nowcast_pl forecast", "model": type(pl_module).__name__,
                            "value_range": list(pl_module.value_range)})
        group.create_array("forecast", shape=(n_samples, members, n_leads, h, w), dtype="float32",
                           chunks=(1, members, n_leads, h, w), fill_value=np.nan,
                           dimension_names=["init_time", "member", "lead_time", "y", "x"],
                           attributes={"units": hp.units, "long_name": "forecast"})
        init = group.create_array("init_time", shape=(n_samples,), dtype="int64", fill_value=0,
                                  dimension_names=["init_time"],
                                  attributes={"units": TIME_UNITS, "calendar": "proleptic_gregorian",
                                              "long_name": "time of the last observed frame"})
        init[:] = init_times
        lead = group.create_array("lead_time", shape=(n_leads,), dtype="int64", fill_value=0,
                                  dimension_names=["lead_time"], attributes={"units": "minutes"})
        lead[:] = np.round(np.arange(1, n_leads + 1) * hp.time_step_minutes).astype(np.int64)
        member = group.create_array("member", shape=(members,), dtype="int32", fill_value=0,
                                    dimension_names=["member"])
        member[:] = np.arange(members)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,
                           dataloader_idx) -> None:
        forecast = trainer.datamodule.to_physical(prediction["forecast"].float().cpu().numpy()[:, :, :, 0])
        for i, row in enumerate(prediction["window"].cpu().numpy()):
            self._forecast[row] = forecast[i]
