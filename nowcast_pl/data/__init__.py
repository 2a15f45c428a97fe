"""Radar stores (Zarr), their schema, and the LightningDataModule that reads them.

The data module (which imports Lightning) is loaded on first use, so store-only users such as
``nowcast-prep`` start quickly.
"""

from typing import Any

from nowcast_pl.data.schema import FrameEncoding, StoreMetadata, StoreValidationError
from nowcast_pl.data.store import RadarStore, RadarStoreWriter, StoreLayout
from nowcast_pl.data.windows import Split

_LAZY = {"RadarDataModule", "RadarWindowDataset"}

__all__ = [
    "FrameEncoding",
    "RadarDataModule",
    "RadarStore",
    "RadarStoreWriter",
    "RadarWindowDataset",
    "Split",
    "StoreLayout",
    "StoreMetadata",
    "StoreValidationError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from nowcast_pl.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'nowcast_pl.data' has no attribute {name!r}")
