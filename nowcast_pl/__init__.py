"""nowcast_pl: diffusion precipitation nowcasting with PyTorch Lightning.

``nowcast_pl.forecast`` and ``nowcast_pl.load_forecaster`` (from :mod:`nowcast_pl.forecasting`) are imported on
first use, so ``import nowcast_pl`` stays light.
"""

from typing import Any

_FORECASTING = {"forecast", "load_forecaster"}


def __getattr__(name: str) -> Any:
    if name in _FORECASTING:
        from nowcast_pl import forecasting

        return getattr(forecasting, name)
    raise AttributeError(f"module 'nowcast_pl' has no attribute {name!r}")
