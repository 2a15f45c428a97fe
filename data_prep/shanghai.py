"""Shanghai radar echoes (Chen et al. 2020) → radar store, from PNG folders or DiffCast's ``shanghai.h5``.

Raw layouts (``shared/reference/datasets.md`` §4)::

    PNG:  <src>/<sequence>/<frame>.png        8-bit grey, frames sorted by name = time order (6 min)
    HDF5: <src> = shanghai.h5 (or a folder holding it)
          train/"0" … train/"N-1"  (25, H, W) uint8 windows, train/all_len = N;  test/… likewise

Values are stored as raw grey levels (quantity ``grey_level``, units ``1``): the grey-level → dBZ mapping is
unconfirmed, and the papers disagree on the evaluation scale (RainDiff ×70, DiffCast ×90 on grey/255), so
that scale is a model/metric setting, not a store property. Grey level 255 is the store's fill value; source
pixels of 255 are stored as 254 (reported, see :mod:`data_prep.grey`).

Events and splits: each HDF5 window is an event named ``<group>/<key>`` (``train/0``, ``test/17``); each PNG
folder is an event named ``<split>/<folder>``, where ``split`` follows DiffCast's rule — the first
``int(train_fraction · n)`` folders in name order are ``train``, the rest ``test``. Data configs select splits
with ``event_pattern`` (``train/.*``).

Times: neither layout has absolute times, so they are synthetic: 6-minute steps, events laid end to end from
2000-01-01 (:func:`data_prep.timeaxis.synthetic_starts`). A corrupt, non-greyscale or wrongly sized PNG is a
missing frame; a wrongly shaped or unreadable HDF5 window is skipped; both are reported.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.grey import GREY_FILL, FrameError, read_grey_png, reserve_fill, saturation_note
from data_prep.timeaxis import frame_times, synthetic_starts
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

STEP_SECONDS = 360
LAYOUTS = ("auto", "png", "h5")
H5_NAME = "shanghai.h5"
GROUP_ORDER = ("train", "val", "valid", "test")
SAMPLE_FOR_GRID = 5

ENCODING = FrameEncoding(
    dtype="uint8",
    units="1",
    quantity="grey_level",
    long_name="Shanghai radar echo, raw 8-bit grey level",
    fill_value=GREY_FILL,
    comment=(
        "Raw grey levels; their dBZ mapping is unconfirmed. Papers scale grey/255 to [0, 1] and evaluate "
        "x 70 (RainDiff) or x 90 (DiffCast) against thresholds 20, 30, 35, 40. Raw 255 is the fill value: "
        "source pixels of 255 are stored as 254."
    ),
)


class ShanghaiConverter(Converter):
    """Shanghai PNG sequence folders or DiffCast's ``shanghai.h5`` → one store event per sequence/window.

    Args:
        src: folder of sequence folders, an HDF5 file, or a folder holding ``shanghai.h5``.
        layout: ``"png"``, ``"h5"`` or ``"auto"`` (h5 when ``src`` is a file or holds ``shanghai.h5``).
        train_fraction: PNG layout only: share of folders (in name order) named ``train/…``.
        grid: (H, W) of the frames; None to take the most common size among the first few sequences.

    Raises:
        UsageError: on an unknown layout, a fraction outside [0, 1], or a source without frames.
    """

    name = "shanghai"
    layout_help = (
        "Shanghai radar echoes (Chen et al. 2020): PNG sequence folders or DiffCast's shanghai.h5, 6 min\n"
        "  SRC/<sequence>/<frame>.png   (8-bit grey; name order = time order; events train/<seq>, test/<seq>)\n"
        "  SRC/shanghai.h5 or SRC=*.h5  (groups train/test: datasets '0'..'N-1' (25, H, W) uint8, all_len)\n"
        "Raw grey levels are stored (scale disputed: x70 RainDiff, x90 DiffCast); times are synthetic."
    )

    def __init__(self, src: str | Path, *, layout: str = "auto", train_fraction: float = 0.85,
                 grid: tuple[int, int] | None = None) -> None:
        super().__init__(src, layout=layout, train_fraction=train_fraction, grid=grid)
        if layout not in LAYOUTS:
            raise UsageError(f"shanghai: layout={layout!r} is not one of {LAYOUTS}")
        if not 0.0 <= train_fraction <= 1.0:
            raise UsageError(f"shanghai: train_fraction must be in [0, 1], got {train_fraction}")
        self.h5 = self._h5_path(layout)
        self.train_fraction = train_fraction
        self.grid = None if grid is None else (int(grid[0]), int(grid[1]))

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--layout", choices=LAYOUTS, default="auto", help="raw layout (default: auto)")
        parser.add_argument("--train-fraction", dest="train_fraction", type=float, default=0.85,
                            help="PNG folders: share named train/ in name order, DiffCast's 0.85 by default")
        parser.add_argument("--grid", type=int, nargs=2, metavar=("H", "W"),
                            help="frame size (default: most common among the first sequences)")

    def _h5_path(self, layout: str) -> Path | None:
        candidate = self.src if self.src.is_file() else self.src / H5_NAME
        if layout == "h5" or (layout == "auto" and candidate.is_file()):
            if not candidate.is_file():
                raise FileNotFoundError(f"shanghai: no {candidate}; give the .h5 file as --src")
            return candidate
        return None

    def spec(self) -> StoreSpec:
        grid = self.grid or self._detect_grid()
        layout = f"DiffCast HDF5 {self.h5.name}" if self.h5 else "PNG sequence folders"
        split = "HDF5 groups" if self.h5 else f"first int({self.train_fraction} n) folders train, rest test"
        metadata = StoreMetadata(
            title="Shanghai radar echoes",
            source=f"Shanghai radar echo sequences (Harvard Dataverse doi:10.7910/DVN/2GKMQJ), {layout}",
            licence="see the Harvard Dataverse record doi:10.7910/DVN/2GKMQJ",
            citation=(
                "Chen, L., Cao, Y., Ma, L. and Zhang, J. (2020): A Deep Learning-Based Methodology for "
                "Precipitation Nowcasting With Radar. Earth and Space Science 7(2), e2019EA000812."
            ),
            time_step_seconds=STEP_SECONDS,
            extra={"synthetic_times": "6-min steps, events laid end to end from 2000-01-01 (no absolute time)",
                   "split_rule": split},
        )
        return StoreSpec(frame_shape=grid, encoding=ENCODING, metadata=metadata)

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        refs = self._h5_refs(report) if self.h5 else self._png_refs()
        starts = synthetic_starts([ref.info["n_frames"] for ref in refs], STEP_SECONDS)
        for ref, start in zip(refs, starts, strict=True):
            ref.info["start"] = str(start)
        return refs

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        grid = self.grid or tuple(ref.info["grid"])
        if self.h5:
            frames = _read_window(self.h5, ref, grid, report)
            if frames is None:
                return None
            frames, saturated = reserve_fill(frames)
            valid = np.ones(frames.shape[0], dtype=bool)
        else:
            frames, valid, saturated = _read_sequence(ref, grid, report)
            if not valid.any():
                report.add(ref.files[0], "no readable frame in this sequence", "skipped", ref.name)
                return None
        if saturated:
            report.add(ref.files[0], saturation_note(saturated), "note", ref.name)
        times = frame_times(np.datetime64(ref.info["start"]), frames.shape[0], STEP_SECONDS)
        return EventData(name=ref.name, times=times, frames=frames, frame_valid=valid)

    def _sequences(self) -> list[tuple[Path, list[Path]]]:
        folders = sorted(p for p in self.src.iterdir() if p.is_dir())
        found = [(f, sorted(f.glob("*.png"))) for f in folders]
        found = [(f, pngs) for f, pngs in found if pngs]
        if not found:
            raise UsageError(f"shanghai: no <sequence>/*.png folders under {self.src} and no {H5_NAME}")
        return found

    def _png_refs(self) -> list[EventRef]:
        sequences = self._sequences()
        n_train = int(self.train_fraction * len(sequences))
        grid = list(self.grid or self._detect_grid())
        return [EventRef(name=f"{'train' if k < n_train else 'test'}/{folder.name}", files=tuple(map(str, pngs)),
                         info={"n_frames": len(pngs), "grid": grid})
                for k, (folder, pngs) in enumerate(sequences)]

    def _h5_refs(self, report: ConversionReport) -> list[EventRef]:
        grid = self.grid or self._detect_grid()
        refs = []
        try:
            h5 = h5py.File(self.h5, "r")
        except OSError as err:
            report.add(self.h5, f"unreadable HDF5 ({err}); no window read", "skipped")
            return refs
        with h5:
            for group in _groups(h5):
                keys = sorted((k for k in h5[group] if k.isdigit()), key=int)
                _check_all_len(h5[group], group, len(keys), self.h5, report)
                for key in keys:
                    shape = h5[group][key].shape
                    name = f"{group}/{key}"
                    if len(shape) != 3 or shape[1:] != grid or shape[0] < 1:
                        report.add(self.h5, f"{name} has shape {shape}, expected (T, {grid[0]}, {grid[1]})",
                                   "skipped", name)
                        continue
                    refs.append(EventRef(name=name, files=(str(self.h5),),
                                         info={"n_frames": int(shape[0]), "grid": list(grid)}))
        return refs

    def _detect_grid(self) -> tuple[int, int]:
        """Most common (H, W) of the first sequences' first frames or the first HDF5 windows."""
        shapes, errors = [], []
        if self.h5:
            try:
                with h5py.File(self.h5, "r") as h5:
                    for group in _groups(h5):
                        keys = sorted((k for k in h5[group] if k.isdigit()), key=int)[:SAMPLE_FOR_GRID]
                        shapes += [tuple(h5[group][k].shape[1:]) for k in keys if h5[group][k].ndim == 3]
            except OSError as err:
                errors.append(f"{self.h5}: unreadable HDF5 ({err})")
        else:
            for _, pngs in self._sequences()[:SAMPLE_FOR_GRID]:
                try:
                    with Image.open(pngs[0]) as image:
                        shapes.append((image.height, image.width))
                except OSError as err:
                    errors.append(f"{pngs[0]}: unreadable PNG ({type(err).__name__}: {err})")
        if not shapes:
            first = f"; first error: {errors[0]}" if errors else ""
            raise UsageError(f"shanghai: cannot tell the frame size from {self.src}{first}; check --src, or "
                             "pass --grid H W to convert the readable frames")
        return Counter(shapes).most_common(1)[0][0]


def _groups(h5: h5py.File) -> list[str]:
    """Split groups of the file: train, val, valid, test first, then any other group by name."""
    names = [g for g in h5 if isinstance(h5[g], h5py.Group)]
    return sorted(names, key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g))


def _check_all_len(group: h5py.Group, name: str, n_keys: int, path: Path, report: ConversionReport) -> None:
    if "all_len" not in group:
        report.add(path, f"group {name!r} has no all_len; using its {n_keys} numbered datasets", "note")
        return
    stated = int(np.asarray(group["all_len"][()]))
    if stated != n_keys:
        report.add(path, f"group {name!r}: all_len = {stated} but {n_keys} numbered datasets; using those",
                   "note")


def _read_window(path: Path, ref: EventRef, grid: tuple[int, int], report: ConversionReport) -> np.ndarray | None:
    try:
        with h5py.File(path, "r") as h5:
            frames = np.asarray(h5[ref.name][()])
    except (OSError, KeyError) as err:
        report.add(path, f"cannot read {ref.name} ({err})", "skipped", ref.name)
        return None
    if frames.dtype.kind not in "iu" or frames.min() < 0 or frames.max() > 255:
        report.add(path, f"{ref.name} holds values {frames.min()}..{frames.max()}, not grey levels 0-255",
                   "skipped", ref.name)
        return None
    return frames.astype(np.uint8)


def _read_sequence(ref: EventRef, grid: tuple[int, int], report: ConversionReport):
    """(T, H, W) uint8 frames (fill where unreadable), (T,) validity, and the count of saturated pixels."""
    frames = np.full((len(ref.files), *grid), GREY_FILL, dtype=np.uint8)
    valid = np.zeros(len(ref.files), dtype=bool)
    saturated = 0
    for k, png in enumerate(ref.files):
        try:
            frames[k], count = reserve_fill(read_grey_png(png, grid))
        except FrameError as err:
            report.add(png, f"{err}; recorded as missing", "skipped", ref.name)
            continue
        valid[k], saturated = True, saturated + count
    return frames, valid, saturated
