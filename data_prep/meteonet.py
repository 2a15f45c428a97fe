"""MeteoNet reflectivity, old product (Météo-France) → radar store.

Raw layout (``shared/reference/datasets.md`` §3)::

    <src>/**/reflectivity_old_<ZONE>_<YYYY>_<MM>.<part>.npz   savez_compressed, needs allow_pickle
        data        (T, 565, 784) int16 for NW, (T, 515, 784) for SE; only the frames present
        dates       (T,) object array of naive datetime.datetime (UTC), the time of each data row
        miss_dates  (M,) object array of datetime.datetime, frames missing from data
    <src>/**/radar_coords_<ZONE>.npz                         lats, lons (H, W), optional
    <src>/<ZONE>/radar/reflectivity_old_product/<ZONE>_reflectivity_old_product_<YYYY>.tar.gz
        └ reflectivity-old-<ZONE>-<YYYY>-<MM>.tar.gz └ the npz files above (nested archives)

Values are the lower bounds of reflectivity classes in dBZ — 0 (Z < 8), 8 (8–16), 16 (16–20), then 1-dBZ
steps 20…69 and 70 (≥ 70) — and 255 = no data (outside coverage or missing). They are stored unchanged as
uint8 dBZ (scale 1, fill 255); a frame with any other value is corrupt and recorded as missing.

One zone per store (``--zone``, default NW, the zone of DiffCast's h5). The time axis is rebuilt from
``sorted(dates ∪ miss_dates)`` of every file, not from the ambiguous part boundaries; events are UTC days
(``YYYYMMDD``) on a regular 5-minute axis from the day's first to its last listed time. Listed-missing frames,
unlisted gaps, a time given twice (kept from the first file in name order), a time in both ``dates`` and
``miss_dates`` (the data wins), out-of-order ``dates``, and corrupt, truncated or wrongly shaped files all go to
the conversion report. ``data`` is streamed from the zip one frame at a time, so a day costs one day of memory.
Nested ``.tar.gz`` archives are unpacked (npz files only) into ``--extract-to`` first.
"""

from __future__ import annotations

import argparse
import pickle
import re
import tarfile
import zipfile
import zlib
from collections import defaultdict
from pathlib import Path

import numpy as np

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.timeaxis import describe_missing, to_regular_axis
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

GRIDS = {"NW": (565, 784), "SE": (515, 784)}
STEP_SECONDS = 300
MISSING = 255
MAX_DBZ = 70
NPZ_NAME = re.compile(r"reflectivity_old_(NW|SE)_\d{4}_\d{2}\.\d+\.npz")
# np.load(allow_pickle=True) unpickles a file that is not a zip, so random bytes end in UnpicklingError
NPZ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, pickle.UnpicklingError)

ENCODING = FrameEncoding(
    dtype="uint8",
    units="dBZ",
    quantity="reflectivity",
    long_name="MeteoNet radar reflectivity (old product), lower bound of the reflectivity class",
    fill_value=MISSING,
    comment=(
        "Quantised: 0 means Z < 8 dBZ, 8 means 8-16, 16 means 16-20, 20..69 are 1-dBZ classes, 70 means >= 70; "
        "255 = no data (outside radar coverage or missing). DiffCast scales dBZ / 90, STLDM and CasCast / 70."
    ),
)


class MeteoNetConverter(Converter):
    """MeteoNet ``reflectivity_old_<ZONE>_*.npz`` parts → one store event per UTC day.

    Args:
        src: folder searched recursively for the zone's npz parts and nested tar.gz archives.
        zone: ``"NW"`` (565×784) or ``"SE"`` (515×784).
        extract_to: folder to unpack nested tar.gz archives into; None to skip them (reported).

    Raises:
        UsageError: on an unknown zone.
        FileNotFoundError: (from :meth:`list_events`) if no npz part of the zone is found.
    """

    name = "meteonet"
    layout_help = (
        "MeteoNet reflectivity, old product (Meteo-France): npz parts, NW 565 x 784 / SE 515 x 784, 5 min\n"
        "  SRC/**/reflectivity_old_NW_2016_08.3.npz   (data (T, H, W) int16, dates, miss_dates)\n"
        "  SRC/**/radar_coords_NW.npz                 (lats, lons; optional)\n"
        "  SRC/NW/radar/reflectivity_old_product/NW_reflectivity_old_product_2016.tar.gz (needs --extract-to)\n"
        "Events are UTC days (YYYYMMDD) on the axis sorted(dates + miss_dates); values are dBZ class bounds."
    )

    def __init__(self, src: str | Path, *, zone: str = "NW", extract_to: str | None = None) -> None:
        super().__init__(src, zone=zone, extract_to=extract_to)
        if zone not in GRIDS:
            raise UsageError(f"meteonet: zone={zone!r} is not one of {sorted(GRIDS)}")
        self.zone = zone
        self.grid = GRIDS[zone]
        self.extract_to = None if extract_to is None else Path(extract_to)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--zone", choices=sorted(GRIDS), default="NW", help="MeteoNet zone (default NW)")
        parser.add_argument("--extract-to", dest="extract_to",
                            help="unpack the npz files of nested .tar.gz archives into this folder first")

    def spec(self) -> StoreSpec:
        extra = {"zone": self.zone, "grid": "EPSG:4326 regular 0.01 degree grid, row 0 = north"}
        coords = next(self.src.rglob(f"radar_coords_{self.zone}.npz"), None)
        if coords is not None:
            try:
                with np.load(coords) as npz:
                    lats, lons = npz["lats"], npz["lons"]
            except NPZ_ERRORS as err:
                raise UsageError(f"meteonet: {coords} is not a readable radar_coords npz with lats and lons "
                                 f"({type(err).__name__}: {err}); replace or remove it") from None
            extra.update(lat_first_last_row=[float(lats[0, 0]), float(lats[-1, 0])],
                         lon_first_last_col=[float(lons[0, 0]), float(lons[0, -1])])
        metadata = StoreMetadata(
            title=f"MeteoNet {self.zone} reflectivity (old product)",
            source=f"Meteo-France MeteoNet, radar reflectivity_old_product, zone {self.zone}",
            licence="Etalab Open Licence 2.0 (attribution required)",
            citation="MeteoNet, an open reference weather dataset by Meteo-France (meteofrance.github.io/meteonet)",
            time_step_seconds=STEP_SECONDS,
            projection="EPSG:4326",
            extra=extra,
        )
        return StoreSpec(frame_shape=self.grid, encoding=ENCODING, metadata=metadata)

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        slots: dict[np.datetime64, tuple[str, int]] = {}  # time → (file, data row, or -1 if listed missing)
        for path in self._npz_files(report):
            listing = _read_listing(path, self.grid, report)
            if listing is not None:
                _merge_listing(slots, str(path), *listing, report)
        by_day: dict[str, list[np.datetime64]] = defaultdict(list)
        for time in sorted(slots):
            by_day[str(time)[:10].replace("-", "")].append(time)
        refs = []
        for day, times in by_day.items():
            files = sorted({slots[t][0] for t in times})
            info = {"times": [str(t) for t in times], "file": [files.index(slots[t][0]) for t in times],
                    "row": [slots[t][1] for t in times]}
            refs.append(EventRef(name=day, files=tuple(files), info=info))
        return refs

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        times = np.array(ref.info["times"], dtype="datetime64[s]")
        file_of, row_of = np.array(ref.info["file"]), np.array(ref.info["row"])
        axis, take, slot = to_regular_axis(times, STEP_SECONDS, report, file=ref.files[0], event=ref.name)
        frames = np.full((axis.size, *self.grid), MISSING, dtype=np.uint8)
        valid = np.zeros(axis.size, dtype=bool)
        for index, file in enumerate(ref.files):
            mine = file_of[take] == index
            listed_missing = mine & (row_of[take] < 0)
            if listed_missing.any():
                listed = np.zeros(axis.size, bool)
                listed[slot[listed_missing]] = True
                report.add(file, describe_missing(axis, ~listed) + " listed in miss_dates", "filled_missing",
                           ref.name)
            wanted = mine & (row_of[take] >= 0)
            for k, frame in _stream_rows(Path(file), row_of[take][wanted], slot[wanted], report, ref.name):
                bad = (frame != MISSING) & ((frame < 0) | (frame > MAX_DBZ))
                if bad.any():
                    report.add(file, f"frame {axis[k]} has {int(bad.sum())} value(s) outside 0-{MAX_DBZ}/"
                               f"{MISSING}, e.g. {int(frame[bad][0])}; recorded as missing", "skipped", ref.name)
                    continue
                frames[k], valid[k] = frame, True
        if not valid.any():
            report.add(ref.files[0], "no readable frame on this day", "skipped", ref.name)
            return None
        return EventData(name=ref.name, times=axis, frames=frames, frame_valid=valid)

    def _npz_files(self, report: ConversionReport) -> list[Path]:
        roots = [self.src]
        for archive in sorted(self.src.rglob("*.tar.gz")):
            if self.extract_to is None:
                report.add(archive, "nested archive not read; pass --extract-to DIR to unpack its npz files",
                           "skipped")
            else:
                _extract_npz(archive, self.zone, self.extract_to, report)
        if self.extract_to is not None:
            roots.append(self.extract_to)
        found = {p.resolve() for root in roots for p in root.rglob("*.npz")
                 if (m := NPZ_NAME.fullmatch(p.name)) and m.group(1) == self.zone}
        if not found:
            raise FileNotFoundError(f"meteonet: no reflectivity_old_{self.zone}_*.npz under {self.src}"
                                    + ("" if self.extract_to else " (nested .tar.gz need --extract-to)"))
        return sorted(found, key=lambda p: p.name)


def _read_listing(path: Path, grid: tuple[int, int], report: ConversionReport):
    """``(dates, miss_dates)`` as datetime64[s] after checking ``data``'s header; None (reported) if unusable."""
    try:
        with np.load(path, allow_pickle=True) as npz:
            dates = np.array(list(npz["dates"]), dtype="datetime64[s]")
            miss = np.array(list(npz["miss_dates"]), dtype="datetime64[s]")
        with zipfile.ZipFile(path) as zf, zf.open("data.npy") as stream:
            shape, dtype = _npy_header(stream)
    except NPZ_ERRORS as err:
        report.add(path, f"unreadable MeteoNet npz ({type(err).__name__}: {err})", "skipped")
        return None
    if len(shape) != 3 or shape[1:] != grid or shape[0] != dates.size or dtype.kind not in "iu":
        report.add(path, f"data is {dtype} {shape}, expected integer ({dates.size}, {grid[0]}, {grid[1]}) "
                   "(one frame per date)", "skipped")
        return None
    if np.any(np.diff(dates.astype(np.int64)) < 0):
        report.add(path, "dates out of order; frames placed by their own time", "reordered")
    return dates, miss


def _merge_listing(slots: dict, file: str, dates: np.ndarray, miss: np.ndarray, report: ConversionReport) -> None:
    """Add one file's present and listed-missing times to ``slots``.

    A frame present in two places is kept from the first file (in name order); a frame present anywhere
    overrides a ``miss_dates`` entry elsewhere.
    """
    present = set(dates.tolist())
    for time in sorted(set(miss.tolist()) & present):
        report.add(file, f"{np.datetime64(time, 's')} is in both dates and miss_dates; the data frame is used",
                   "note", _day(time))
    entries = [(t, row) for row, t in enumerate(dates)] + [(t, -1) for t in miss if t.tolist() not in present]
    for time, row in entries:
        kept_file, kept_row = slots.get(time, ("", -1))
        if row >= 0 and kept_row >= 0:
            where = "twice in this file" if kept_file == file else f"also in {Path(kept_file).name}"
            report.add(file, f"frame {time} is {where}; kept the first", "dropped_duplicate", _day(time))
        elif row >= 0 or not kept_file:
            slots[time] = (file, row)


def _day(time) -> str:
    return str(np.datetime64(time, "s"))[:10].replace("-", "")


def _npy_header(stream) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if fortran:
        raise ValueError("data is stored in Fortran order and cannot be streamed frame by frame")
    return tuple(shape), dtype


def _stream_rows(path: Path, rows: np.ndarray, slots: np.ndarray, report: ConversionReport, event: str):
    """Yield ``(slot, (H, W) frame)`` for the requested ``data`` rows, decompressing the npz member once.

    A corrupt stream ends the iteration and is reported; the frames not yielded stay missing.
    """
    order = np.argsort(rows)
    try:
        with zipfile.ZipFile(path) as zf, zf.open("data.npy") as stream:
            shape, dtype = _npy_header(stream)
            start, frame_bytes = stream.tell(), int(np.prod(shape[1:])) * dtype.itemsize
            for row, slot in zip(rows[order], slots[order], strict=True):
                stream.seek(start + int(row) * frame_bytes)
                buffer = stream.read(frame_bytes)
                if len(buffer) != frame_bytes:
                    raise EOFError(f"data ends before row {row}")
                yield int(slot), np.frombuffer(buffer, dtype=dtype).reshape(shape[1:])
    except NPZ_ERRORS as err:
        report.add(path, f"data stream broken ({type(err).__name__}: {err}); the remaining frames of this "
                   "day are recorded as missing", "skipped", event)


def _extract_npz(archive: Path, zone: str, dest: Path, report: ConversionReport) -> None:
    """Unpack the zone's npz parts of a MeteoNet year archive (tar.gz of monthly tar.gz) into ``dest``.

    Files already there with the same size are kept, so an interrupted conversion resumes cheaply.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:gz") as outer:
            for member in outer:
                if member.isfile() and member.name.endswith(".tar.gz"):
                    with tarfile.open(fileobj=outer.extractfile(member), mode="r|gz") as inner:
                        for item in inner:
                            _extract_member(inner, item, zone, dest)
                else:
                    _extract_member(outer, member, zone, dest)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        report.add(archive, f"corrupt archive ({type(err).__name__}: {err}); files after the error skipped",
                   "skipped")


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, zone: str, dest: Path) -> None:
    name = Path(member.name).name
    match = NPZ_NAME.fullmatch(name)
    if not member.isfile() or match is None or match.group(1) != zone:
        return
    target = dest / name
    if target.is_file() and target.stat().st_size == member.size:
        return
    partial = target.with_suffix(".part")
    with tar.extractfile(member) as source, open(partial, "wb") as out:
        while chunk := source.read(1 << 24):
            out.write(chunk)
    partial.replace(target)
