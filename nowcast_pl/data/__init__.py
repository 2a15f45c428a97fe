"""Radar stores (Zarr), their schema, and the LightningDataModule that reads them."""

from nowcast_pl.data.datamodule import RadarDataModule, RadarWindowDataset
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata, StoreValidationError
from nowcast_pl.data.store import RadarStore, RadarStoreWriter, StoreLayout
from nowcast_pl.data.windows import Split

__all__ = [
    "RadarDataModule",
    "RadarWindowDataset",
    "Split",
    "FrameEncoding",
    "RadarStore",
    "RadarStoreWriter",
    "StoreLayout",
    "StoreMetadata",
    "StoreValidationError",
]
