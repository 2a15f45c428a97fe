"""Forecasts of any domain from a trained model: ``load_forecaster`` and ``forecast`` (see docs/forecasting.md).

    from nowcast_pl.forecasting import forecast, load_forecaster
    model = load_forecaster("runs/tiny-raindiff")                 # run folder or .ckpt
    ensemble = forecast(model, precip, members=4, seed=0)       # (members, leads, y, x)

**What the model expects.** A model is trained on frames of its radar store, in the store's physical units
(``model.hparams.units``, e.g. ``dBZ`` or ``mm h-1``; parsed by :mod:`nowcast_pl.data.units`), every
``model.hparams.time_step_minutes`` minutes, mapped linearly to [0, 1] by ``value_range`` (values outside
clipped, missing pixels 0; :mod:`nowcast_pl.data.transforms`). ``forecast`` takes frames in those units (or
units that convert to them, given by pysteps' ``metadata["unit"]`` or a DataArray's ``units``), untransformed
(pysteps ``metadata["transform"]`` None), NaN where there is no data, oldest first, and returns the forecast in
the input's units: pysteps' conventions, so the result goes to ``pysteps.verification`` and
``pysteps.visualization`` as a ``pysteps.nowcasts.steps.forecast`` result does.

**Frame recipe.** A checkpoint records how its frames were made from the store
(:class:`~nowcast_pl.data.preparation.FramePreparation`: value range, units, resize factor and method, the
frame or crop size the model saw). A new grid is treated the same way: resized by the same factor (store pixels
per model pixel), forecast in overlapping tiles of the model's frame size blended with raised-cosine weights
(:mod:`~nowcast_pl.forecasting.tiles`; grids smaller than a tile or not filling whole tiles are zero-padded and
cropped back), then resized back to the input grid (bilinear) and mapped back to physical units.

**Coherent members.** Every noise draw of a diffusion sampler is one field over the whole domain, read by each
tile as a crop (:mod:`~nowcast_pl.forecasting.noise`), so tiles agree where they overlap and member n depends
only on (seed, n) (up to float rounding between different tile batches). Memory is bounded by one batch of
``tile_batch`` tiles, the input and the result.
"""

from nowcast_pl.data.preparation import FramePreparation
from nowcast_pl.forecasting.api import forecast, forecast_tiles
from nowcast_pl.forecasting.loading import load_forecaster
from nowcast_pl.forecasting.tiles import TileLayout, plan_tiles

__all__ = ["FramePreparation", "TileLayout", "forecast", "forecast_tiles", "load_forecaster", "plan_tiles"]
