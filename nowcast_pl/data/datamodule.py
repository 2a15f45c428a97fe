"""``RadarDataModule``: windows of frames from a radar store, scaled to [0, 1] and resized to the model grid."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset

from nowcast_pl.data.coverage import windows_without_valid_target
from nowcast_pl.data.resumable import ResumableDataLoader, ResumableSampler
from nowcast_pl.data.store import RadarStore
from nowcast_pl.data.transforms import (
    RESIZE_METHODS,
    ResizeMethod,
    resize_frames,
    resize_mask,
    scale_to_unit,
    unit_to_physical,
)
from nowcast_pl.data.windows import Split, find_windows

log = logging.getLogger(__name__)

STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class RadarWindowDataset(Dataset):
    """Windows of ``in_frames + out_frames`` frames from one store.

    Each item is a dict:
        ``inputs``: (T_in, 1, h, w) float32 in [0, 1]; ``targets``: (T_out, 1, h, w) float32 in [0, 1];
        ``input_mask`` / ``target_mask``: same shapes, bool, False for missing frames or pixels (their
        values are 0); ``init_time``: int64 UTC epoch seconds of the last input frame;
        ``window``: int64 position of the window in this dataset.

    Args:
        store: the opened store (only paths and 1-D indices are pickled to workers).
        starts: (N,) first-frame indices of the windows.
        in_frames: observed frames per window.
        out_frames: frames to predict per window.
        value_range: physical (lo, hi) mapped to [0, 1].
        frame_size: model grid (h, w), or None to keep the store's grid.
        resize_method: see :func:`nowcast_pl.data.transforms.resize_frames`.
        antialias: antialias when downsampling with bilinear/bicubic.
    """

    def __init__(
        self,
        store: RadarStore,
        starts: np.ndarray,
        *,
        in_frames: int,
        out_frames: int,
        value_range: tuple[float, float],
        frame_size: tuple[int, int] | None,
        resize_method: ResizeMethod,
        antialias: bool,
    ) -> None:
        self.store = store
        self.starts = starts
        self.in_frames = in_frames
        self.length = in_frames + out_frames
        self.value_range = value_range
        self.frame_size = frame_size or store.frame_shape
        self.resize_method = resize_method
        self.antialias = antialias
        # (N,) int64 UTC epoch seconds of the last observed frame of every window (the forecast start).
        self.init_times = store.times[starts + in_frames - 1].astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts.size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start = int(self.starts[index])
        stop = start + self.length
        store = self.store
        values, valid = scale_to_unit(store.encoding.decode(store.read_raw(start, stop)), self.value_range)
        valid &= store.frame_valid[start:stop, None, None]
        pixel_valid = store.read_pixel_valid(start, stop)
        if pixel_valid is not None:
            valid &= pixel_valid
        if store.static_mask is not None:
            valid &= store.static_mask
        values[~valid] = 0.0
        frames = resize_frames(torch.from_numpy(values)[:, None], self.frame_size,
                               method=self.resize_method, antialias=self.antialias).clamp_(0.0, 1.0)
        mask = resize_mask(torch.from_numpy(valid)[:, None], self.frame_size, method=self.resize_method)
        t_in = self.in_frames
        return {
            "inputs": frames[:t_in],
            "targets": frames[t_in:],
            "input_mask": mask[:t_in],
            "target_mask": mask[t_in:],
            "init_time": torch.tensor(self.init_times[index], dtype=torch.int64),
            "window": torch.tensor(index, dtype=torch.int64),
        }


class RadarDataModule(pl.LightningDataModule):
    """Train/val/test/predict windows from a radar store written by ``nowcast-prep``.

    Args:
        store: path of the radar store (``*.zarr``).
        in_frames: observed frames per sample (T_in).
        out_frames: frames to predict per sample (T_out).
        value_range: physical values (store units, e.g. dBZ) mapped to 0 and 1; values outside are clipped.
        splits: selection per split name (``train``, ``val``, ``test``, ``predict``); see :class:`Split`.
        frame_size: model grid size (one int for square frames, or [h, w]); None keeps the store's grid.
        resize_method: ``bilinear``, ``bicubic``, ``nearest``, ``area``, ``max`` (block maximum) or ``pad``
            (zero-pad around the centre, masked, e.g. CIKM 101 → 128 as DiffCast's ``CenterCrop``).
        antialias: antialias when downsampling with bilinear/bicubic (the papers did not).
        max_missing_frames: windows may contain up to this many missing frames (filled with 0, masked);
            0 drops every window with a missing frame.
        batch_size: training batch size per device.
        eval_batch_size: batch size for val/test/predict (default: ``batch_size``).
        num_workers: DataLoader worker processes per device.
        persistent_workers: keep workers alive between epochs (when ``num_workers > 0``).
        shuffle_seed: seed of the training shuffle; the order of epoch e depends only on (seed, e), so a
            resumed run sees exactly the batches an uninterrupted run would have seen.
    """

    def __init__(
        self,
        store: str,
        *,
        in_frames: int,
        out_frames: int,
        value_range: tuple[float, float],
        splits: dict[str, Split],
        frame_size: int | tuple[int, int] | None = None,
        resize_method: ResizeMethod = "bilinear",
        antialias: bool = False,
        max_missing_frames: int = 0,
        batch_size: int = 4,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        persistent_workers: bool = True,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        _check_args(in_frames, out_frames, value_range, splits, resize_method, max_missing_frames)
        self.save_hyperparameters()
        self.store_path = Path(store)
        self.in_frames, self.out_frames = in_frames, out_frames
        self.value_range = (float(value_range[0]), float(value_range[1]))
        self.splits = {name: split if isinstance(split, Split) else Split(**split) for name, split in splits.items()}
        self.frame_size = (frame_size, frame_size) if isinstance(frame_size, int) else frame_size
        self.resize_method, self.antialias = resize_method, antialias
        self.max_missing_frames = max_missing_frames
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.persistent_workers = num_workers, persistent_workers
        self.shuffle_seed = shuffle_seed
        self.datasets: dict[str, RadarWindowDataset] = {}
        # Per set-up split: windows none of whose target frames has a valid pixel (warned about at set-up).
        self.windows_without_valid_pixel: dict[str, int] = {}
        self._store: RadarStore | None = None

    @property
    def store(self) -> RadarStore:
        """The validated store (opened on first use)."""
        if self._store is None:
            self._store = RadarStore(self.store_path)
        return self._store

    @property
    def units(self) -> str:
        """Physical units of the store's frames (e.g. ``"dBZ"``)."""
        return self.store.encoding.units

    @property
    def time_step_minutes(self) -> float:
        """Minutes between consecutive frames of the store."""
        return self.store.attrs["time_step_seconds"] / 60.0

    def init_times(self, split_name: str) -> np.ndarray:
        """(N,) int64 UTC epoch seconds of the forecast start of every window of a set-up split, in order."""
        return self.datasets[split_name].init_times

    def window_events(self, split_name: str) -> np.ndarray:
        """(N,) int64 store event index of every window of a set-up split, in order (names: ``store.event_names``)."""
        dataset = self.datasets[split_name]
        return self.store.event[dataset.starts].astype(np.int64)

    def to_physical(self, values):
        """[0, 1] model values (array or tensor) → the store's physical units, e.g. dBZ."""
        return unit_to_physical(values, self.value_range)

    def setup(self, stage: str) -> None:
        for split_name in STAGE_SPLITS[stage]:
            if split_name not in self.splits:
                if split_name == "val":
                    continue
                raise ValueError(
                    f"data.splits has no '{split_name}' entry, needed by `{stage}`; "
                    f"configured splits: {sorted(self.splits)}"
                )
            if split_name not in self.datasets:
                self.datasets[split_name] = self._build_dataset(split_name)

    def _build_dataset(self, split_name: str) -> RadarWindowDataset:
        store = self.store
        length = self.in_frames + self.out_frames
        starts = find_windows(store.times, store.event, store.frame_valid, store.event_names,
                              event_times=store.event_times, length=length,
                              time_step=store.time_step, split=self.splits[split_name],
                              max_missing=self.max_missing_frames)
        if starts.size == 0:
            raise ValueError(_no_window_message(store, split_name, self.splits[split_name], length))
        empty = windows_without_valid_target(store, starts, in_frames=self.in_frames, out_frames=self.out_frames)
        self.windows_without_valid_pixel[split_name] = int(empty.sum())
        if empty.any() and (self.trainer is None or self.trainer.is_global_zero):
            log.warning("%s: %d of %d windows have no valid pixel in their %d target frames (missing or all-NaN "
                        "frames of %s): their loss and scores are undefined, and a training batch of only such "
                        "windows is an error; narrow the split or fix the store",
                        split_name, empty.sum(), empty.size, self.out_frames, store.path)
        return RadarWindowDataset(store, starts, in_frames=self.in_frames, out_frames=self.out_frames,
                                  value_range=self.value_range, frame_size=self.frame_size,
                                  resize_method=self.resize_method, antialias=self.antialias)

    def on_before_batch_transfer(self, batch: dict[str, torch.Tensor], dataloader_idx: int) -> dict[str, torch.Tensor]:
        """Refuse a training batch without any valid target pixel: the masked loss over it would be a silent 0.

        Checked on the batch's CPU copy, so that training on a GPU does not wait for the device every step.
        """
        trainer = self.trainer
        if trainer is not None and trainer.training and not bool(batch["target_mask"].any()):
            raise ValueError(
                f"the training batch of global step {trainer.global_step} (windows {batch['window'].tolist()} of "
                f"the train split of {self.store_path}) has no valid target pixel, so its loss would be 0: the "
                "store's target frames there are missing or all NaN (see the warning at set-up); narrow "
                "data.splits.train or fix the store"
            )
        return batch

    def _loader(self, split_name: str, *, train: bool) -> DataLoader:
        dataset = self.datasets[split_name]
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        workers = self.num_workers
        common = dict(num_workers=workers, persistent_workers=self.persistent_workers and workers > 0,
                      pin_memory=torch.cuda.is_available())
        if train:
            # Lightning calls set_epoch() every epoch and checkpoints the position inside the epoch.
            sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, seed=self.shuffle_seed)
            return ResumableDataLoader(dataset, sampler=sampler, batch_size=self.batch_size,
                                       drop_last=len(dataset) // world > self.batch_size, **common)
        # Every window is evaluated exactly once: no padding with repeated samples across ranks. The loader's
        # own generator keeps worker seeding off the global random stream of training.
        sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False) \
            if world > 1 else None
        return DataLoader(dataset, batch_size=self.eval_batch_size, sampler=sampler,
                          generator=torch.Generator().manual_seed(self.shuffle_seed), **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", train=False) if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", train=False)


def _check_args(in_frames, out_frames, value_range, splits, resize_method, max_missing_frames) -> None:
    if in_frames < 1 or out_frames < 1:
        raise ValueError(f"data.in_frames and data.out_frames must be >= 1, got {in_frames}, {out_frames}")
    if len(value_range) != 2 or not value_range[1] > value_range[0]:
        raise ValueError(f"data.value_range must be [lo, hi] with hi > lo, got {value_range}")
    unknown = sorted(set(splits) - {"train", "val", "test", "predict"})
    if unknown:
        raise ValueError(f"data.splits has unknown split names {unknown}; use train, val, test, predict")
    if resize_method not in RESIZE_METHODS:
        raise ValueError(f"data.resize_method={resize_method!r} is not one of {RESIZE_METHODS}")
    if max_missing_frames < 0:
        raise ValueError("data.max_missing_frames must be >= 0")


def _no_window_message(store: RadarStore, split_name: str, split: Split, length: int) -> str:
    runs = _longest_contiguous_run(store)
    return (
        f"split '{split_name}' of {store.path} has no window of {length} frames (in_frames + out_frames). "
        f"Longest contiguous run of frames in the store: {runs}; split rules: {split}. Reduce the window, "
        "allow missing frames (data.max_missing_frames) or widen the split."
    )


def _longest_contiguous_run(store: RadarStore) -> int:
    if len(store) == 0:
        return 0
    breaks = (np.diff(store.times) != store.time_step) | (np.diff(store.event) != 0)
    edges = np.r_[0, np.flatnonzero(breaks) + 1, len(store)]
    return int(np.diff(edges).max())

