"""Radar stores (Zarr), their schema, and the LightningDataModule that reads them."""

from nowcast_pl.data.schema import FrameEncoding, StoreMetadata, StoreValidationError
from nowcast_pl.data.store import RadarStore, RadarStoreWriter, StoreLayout

__all__ = [
    "FrameEncoding",
    "RadarStore",
    "RadarStoreWriter",
    "StoreLayout",
    "StoreMetadata",
    "StoreValidationError",
]
