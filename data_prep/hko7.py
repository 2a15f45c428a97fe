"""HKO-7 (Shi et al. 2017) radar PNGs → radar store.

Raw layout (``shared/reference/datasets.md`` §2; ``<src>`` is ``hko_data/`` or STLDM's ``data/HKO-7/``)::

    <src>/radarPNG/YYYY/MM/DD/RADyymmddHHMM00.png       480×480 8-bit grey p, dBZ = 70·p/255 − 10
    <src>/radarPNG_mask/YYYY/MM/DD/RADyymmddHHMM00.mask zlib of 480·480 bool bytes, True = use the pixel
    <src>/mask_dat.npz (or <src>/hko_data/mask_dat.npz) exclude_mask (480, 480) uint8, 1 = drop the pixel
    <src>/pd/hko7_rainy_{train,valid,test}.pkl            DataFrame with a DatetimeIndex of 6-min frame times

Which frames: by default every PNG present. With ``--index`` (repeatable), the frames listed in those pandas
pickles; each pickle's name up to the first dot (e.g. ``hko7_rainy_test``) becomes the event-name prefix
(``hko7_rainy_test/20150110``), so data configs select the official splits by ``event_pattern``.

Events are calendar days of the file names (``YYYYMMDD``) on a regular 6-minute axis from the day's first to
its last frame; with ``--max-gap N`` a day is cut wherever more than N consecutive frames are missing and
events are named ``YYYYMMDD-HHMM`` by their first frame. Steps without a frame (not listed, PNG missing,
unreadable or of the wrong shape) are missing frames (``frame_valid = False``) and reported.

Masks: each ``.mask`` becomes the frame's ``pixel_valid`` (a missing or corrupt one is reported and
replaced by all-True); ``1 − exclude_mask`` becomes the store's ``static_mask`` when the file exists.
Grey level 255 is the store's fill value, so PNG pixels of 255 are stored as 254 (see :mod:`data_prep.grey`).
Times are the file-name timestamps unchanged; whether these are UTC or Hong Kong time is not documented.
"""

from __future__ import annotations

import argparse
import pickle
import re
import zlib
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.grey import GREY_FILL, FrameError, read_grey_png, reserve_fill, saturation_note
from data_prep.timeaxis import to_regular_axis
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

GRID = (480, 480)
STEP_SECONDS = 360
PNG_NAME = re.compile(r"RAD(\d{10})00\.png")

ENCODING = FrameEncoding(
    dtype="uint8",
    units="dBZ",
    quantity="reflectivity",
    long_name="HKO-7 radar CAPPI reflectivity, 8-bit grey level p",
    fill_value=GREY_FILL,
    scale_factor=70 / 255,
    add_offset=-10.0,
    comment=(
        "dBZ = 70 p / 255 - 10 (HKO-7 nowcasting/hko_evaluation.py); value_range [-10, 60] gives the papers' "
        "p / 255. Raw 255 is the fill value: source pixels of 255 (60 dBZ) are stored as 254 (59.7 dBZ)."
    ),
)


class Hko7Converter(Converter):
    """HKO-7 ``radarPNG`` frames and ``.mask`` files → one store event per day (or per run of frames).

    Args:
        src: folder holding ``radarPNG/`` and ``radarPNG_mask/``.
        index: pandas index pickles defining the frames (relative to ``src`` unless absolute); None or empty
            for every PNG present.
        mask_dat: ``mask_dat.npz`` path; None to look in ``src`` and ``src/hko_data``.
        max_gap: cut events at more than this many consecutive missing frames; None keeps whole days.

    Raises:
        FileNotFoundError: if ``mask_dat`` is given but missing, or (later) an index pickle or every PNG is.
        UsageError: on a negative ``max_gap``, an unreadable index pickle or a wrongly shaped exclude_mask.
    """

    name = "hko7"
    layout_help = (
        "HKO-7 radar PNGs (Hong Kong Observatory): 480 x 480 grey p, dBZ = 70 p / 255 - 10, every 6 min\n"
        "  SRC/radarPNG/2015/01/10/RAD150110000000.png       (frames)\n"
        "  SRC/radarPNG_mask/2015/01/10/RAD150110000000.mask (zlib bool mask -> pixel_valid)\n"
        "  SRC/mask_dat.npz or SRC/hko_data/mask_dat.npz     (exclude_mask -> static_mask, optional)\n"
        "  SRC/pd/hko7_rainy_{train,valid,test}.pkl          (frame lists for --index, optional)\n"
        "Events are days (YYYYMMDD, or <index>/YYYYMMDD with --index) on a 6-min axis with missing frames."
    )

    def __init__(self, src: str | Path, *, index: list[str] | None = None, mask_dat: str | None = None,
                 max_gap: int | None = None) -> None:
        super().__init__(src, index=index, mask_dat=mask_dat, max_gap=max_gap)
        self.index = [self.src / p for p in index or []]
        self.mask_dat = _find_mask_dat(self.src, mask_dat)
        if max_gap is not None and max_gap < 0:
            raise UsageError(f"hko7: max_gap must be >= 0 or None, got {max_gap}")
        self.max_gap = max_gap

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--index", action="append", metavar="PKL",
                            help="pandas index pickle defining the frames, e.g. pd/hko7_rainy_train.pkl "
                                 "(repeatable; its name prefixes the event names); default: every PNG")
        parser.add_argument("--mask-dat", dest="mask_dat", help="mask_dat.npz (default: found under --src)")
        parser.add_argument("--max-gap", dest="max_gap", type=int,
                            help="cut a day into events at more than this many consecutive missing frames")

    def spec(self) -> StoreSpec:
        static = None
        if self.mask_dat is not None:
            try:
                with np.load(self.mask_dat, allow_pickle=True, encoding="latin1") as npz:
                    static = np.asarray(npz["exclude_mask"]) == 0
            except (OSError, ValueError, KeyError, EOFError, pickle.UnpicklingError) as err:
                raise UsageError(f"hko7: {self.mask_dat} is not a readable mask_dat.npz with exclude_mask "
                                 f"({type(err).__name__}: {err}); replace it, or pass --mask-dat") from None
            if static.shape != GRID:
                raise UsageError(f"hko7: {self.mask_dat} exclude_mask is {static.shape}, expected {GRID}")
        metadata = StoreMetadata(
            title="HKO-7",
            source="Hong Kong Observatory HKO-7 radar CAPPI reflectivity (sxjscience/HKO-7), 2009-2015",
            licence="Academic research only, under the signed HKO-7 dataset undertaking",
            citation=(
                "Shi, X. et al. (2017): Deep Learning for Precipitation Nowcasting: A Benchmark and A New "
                "Model. NeurIPS 30."
            ),
            time_step_seconds=STEP_SECONDS,
            extra={
                "index_files": [str(p) for p in self.index],
                "static_mask_source": f"1 - exclude_mask of {self.mask_dat}" if static is not None else "none",
                "time_zone": "file-name timestamps, stored unchanged (UTC or HKT is undocumented)",
            },
        )
        return StoreSpec(frame_shape=GRID, encoding=ENCODING, metadata=metadata, static_mask=static,
                         pixel_masks=True)

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        if self.index:
            sources = []
            for path in self.index:
                times = _read_index(path)
                pngs = [str(self.src / "radarPNG" / _relative_png(t)) for t in times]
                sources.append((_index_label(path), path, times, pngs))
        else:
            sources = [("", self.src / "radarPNG", *self._png_times(report))]
        refs = []
        for label, listing, times, pngs in sources:
            by_day: dict[str, list[int]] = defaultdict(list)
            for i, t in enumerate(times):
                by_day[str(t)[:10].replace("-", "")].append(i)
            for day, rows in sorted(by_day.items()):
                rows = sorted(rows, key=lambda i: times[i])
                for piece in _split_runs(np.array([times[i] for i in rows], dtype="datetime64[s]"), self.max_gap):
                    picked, rows = rows[:piece.size], rows[piece.size:]
                    name = day if self.max_gap is None else f"{day}-{str(piece[0])[11:16].replace(':', '')}"
                    refs.append(EventRef(name=f"{label}/{name}" if label else name,
                                         files=tuple(pngs[i] for i in picked),
                                         info={"times": [str(t) for t in piece], "listing": str(listing)}))
        return refs

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        file = ref.info["listing"]
        times = np.array(ref.info["times"], dtype="datetime64[s]")
        axis, take, slot = to_regular_axis(times, STEP_SECONDS, report, file=file, event=ref.name)
        frames = np.full((axis.size, *GRID), GREY_FILL, dtype=np.uint8)
        pixel_valid = np.ones((axis.size, *GRID), dtype=bool)
        valid = np.zeros(axis.size, dtype=bool)
        saturated = 0
        for i, k in zip(take, slot, strict=True):
            png = Path(ref.files[i])
            if not png.is_file():
                report.add(png, "listed frame has no PNG; recorded as missing", "filled_missing", ref.name)
                continue
            try:
                frames[k], count = reserve_fill(read_grey_png(png, GRID))
            except FrameError as err:
                report.add(png, f"{err}; recorded as missing", "skipped", ref.name)
                continue
            valid[k], saturated = True, saturated + count
            mask = self.src / "radarPNG_mask" / png.relative_to(self.src / "radarPNG").with_suffix(".mask")
            pixel_valid[k] = _read_mask(mask, report, ref.name)
        if not valid.any():
            report.add(file, "no readable frame in this event", "skipped", ref.name)
            return None
        if saturated:
            report.add(file, saturation_note(saturated), "note", ref.name)
        return EventData(name=ref.name, times=axis, frames=frames, frame_valid=valid, pixel_valid=pixel_valid)

    def _png_times(self, report: ConversionReport) -> tuple[list[np.datetime64], list[str]]:
        """Times parsed from the PNG file names, and the PNG paths, in path order."""
        times, paths = [], []
        for png in sorted((self.src / "radarPNG").rglob("*.png")):
            match = PNG_NAME.fullmatch(png.name)
            try:
                times.append(np.datetime64(datetime.strptime(match.group(1), "%y%m%d%H%M"), "s"))
                paths.append(str(png))
            except (AttributeError, ValueError):
                report.add(png, "file name is not RADyymmddHHMM00.png with a valid time", "skipped")
        if not times:
            raise FileNotFoundError(f"hko7: no RAD*.png under {self.src / 'radarPNG'}; check --src")
        return times, paths


def _find_mask_dat(src: Path, given: str | None) -> Path | None:
    if given is not None:
        path = src / given
        if not path.is_file():
            raise FileNotFoundError(f"hko7: --mask-dat {path} does not exist")
        return path
    return next((p for p in (src / "mask_dat.npz", src / "hko_data" / "mask_dat.npz") if p.is_file()), None)


def _index_label(path: Path) -> str:
    """Event-name prefix of an index pickle: its name up to the first dot (``hko7_rainy_test``)."""
    return path.name.split(".")[0]


def _read_index(path: Path) -> np.ndarray:
    """The DatetimeIndex of an HKO-7 index pickle as datetime64[s], in file order.

    Raises:
        FileNotFoundError: if the pickle does not exist.
        UsageError: if it cannot be unpickled or has no DatetimeIndex.
    """
    if not path.is_file():
        raise FileNotFoundError(f"hko7: --index {path} does not exist")
    try:
        frame = pd.read_pickle(path)
    except Exception as err:  # pickles from other pandas versions fail in many ways
        raise UsageError(f"hko7: cannot unpickle index {path} ({type(err).__name__}: {err}); re-save it "
                         "with this pandas version or convert without --index") from err
    if not isinstance(getattr(frame, "index", None), pd.DatetimeIndex):
        raise UsageError(f"hko7: {path} is not a pandas object with a DatetimeIndex of frame times")
    return frame.index.to_numpy().astype("datetime64[s]")


def _split_runs(times: np.ndarray, max_gap: int | None) -> list[np.ndarray]:
    """Cut sorted times where more than ``max_gap`` consecutive 6-minute steps are missing."""
    if max_gap is None or times.size == 0:
        return [times]
    missing = np.diff(times.astype(np.int64)) // STEP_SECONDS - 1
    cuts = np.flatnonzero(missing > max_gap) + 1
    return np.split(times, cuts)


def _relative_png(time: np.datetime64) -> Path:
    """``YYYY/MM/DD/RADyymmddHHMM00.png`` of a frame time."""
    stamp = pd.Timestamp(time)
    return Path(stamp.strftime("%Y/%m/%d")) / f"RAD{stamp.strftime('%y%m%d%H%M')}00.png"


def _read_mask(path: Path, report: ConversionReport, event: str) -> np.ndarray:
    """(480, 480) bool per-frame mask, True = use; all True (reported) if missing or corrupt."""
    try:
        mask = np.frombuffer(zlib.decompress(path.read_bytes()), dtype=np.uint8)
        if mask.size != GRID[0] * GRID[1]:
            raise ValueError(f"{mask.size} bytes, expected {GRID[0] * GRID[1]}")
        return mask.reshape(GRID) != 0
    except (OSError, zlib.error, ValueError) as err:
        report.add(path, f"unusable .mask ({err}); frame kept with every pixel valid", "note", event)
        return np.ones(GRID, dtype=bool)
