"""SEVIR VIL (Veillette et al. 2020) → radar store.

Raw layout (``shared/reference/datasets.md`` §1)::

    <src>/CATALOG.csv                                     one row per (event, image type)
    <src>/data/vil/<year>/SEVIR_VIL_<TYPE>_<YEAR>_<MMDD>_<MMDD>.h5
        id   (N,)              bytes, event id, e.g. b"S728503"
        vil  (N, 384, 384, 49) uint8, N H W T (time last); 0–254 encoded VIL, 255 = missing

Only ``img_type == "vil"`` rows are used. A row's ``file_name`` is relative to ``<src>/data`` and
``file_index`` is its row in ``vil``. Each event becomes one store event named by its id, with frame times
``time_utc + minute_offsets`` and ``event_time = time_utc`` (the catalogue's reference, usually mid-event).
Events are written in ``time_utc`` order and read one ``vil[file_index]`` slice at a time.

Choices, all recorded in the conversion report:

* events with ``pct_missing > 0`` are kept; their 255 pixels stay 255 = ``_FillValue`` (decoded as NaN,
  masked by the data module). The papers' ``pct_missing == 0`` filter is a data-configuration choice, so the
  non-zero values are stored in the group attribute ``pct_missing`` (``{id: percent}``). Frames that are
  entirely 255 are marked ``frame_valid = False``.
* ids that occur in more than one vil row: ``--duplicates drop`` (default) drops every copy, as the
  Earthformer, DiffCast and STLDM loaders do; ``first`` keeps the first row in catalogue order.
* out-of-order or repeated minute offsets are sorted / de-duplicated and the frames placed on a regular
  5-minute axis (a step left without a frame becomes a missing frame); rows whose offsets do not give 49
  times, or whose h5 file is missing, corrupt, of the wrong shape, or holds another id at ``file_index``,
  are skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.timeaxis import to_regular_axis
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

GRID = (384, 384)
N_FRAMES = 49
MISSING = 255
STEP_SECONDS = 300
CATALOG_COLUMNS = ("id", "file_name", "file_index", "img_type", "time_utc", "minute_offsets", "pct_missing")
DUPLICATE_RULES = ("drop", "first")

ENCODING = FrameEncoding(
    dtype="uint8",
    units="1",
    quantity="vil",
    long_name="SEVIR vertically integrated liquid, encoded levels 0-254",
    fill_value=MISSING,
    comment=(
        "Non-linear encoding X (eie-sevir SEVIR tutorial): VIL [kg m-2] = 0 for X <= 5; "
        "(X - 2) / 90.66 for 5 < X <= 18; "
        "exp((X - 83.9) / 38.9) for 18 < X <= 254; 255 = missing. The usual thresholds 16, 74, 133, 160, 181, "
        "219 are in these units (0.15, 0.78, 3.53, 7.07, 12.1, 32.2 kg m-2)."
    ),
)


class SevirConverter(Converter):
    """SEVIR ``CATALOG.csv`` + ``data/vil/<year>/*.h5`` → one store event per VIL event.

    Args:
        src: SEVIR root (holds ``CATALOG.csv`` and ``data/``).
        catalog: catalogue path, relative to ``src`` unless absolute.
        duplicates: ``"drop"`` every row of a repeated id, or keep the ``"first"``.

    Raises:
        UsageError: on an unknown ``duplicates`` rule, or (from :meth:`spec`/:meth:`list_events`) a catalogue
            without the SEVIR columns.
    """

    name = "sevir"
    layout_help = (
        "SEVIR VIL events (MIT-LL, s3://sevir): CATALOG.csv + HDF5, 384 x 384 px at 1 km, 49 frames at 5 min\n"
        "  SRC/CATALOG.csv                                           (img_type 'vil' rows are used)\n"
        "  SRC/data/vil/2019/SEVIR_VIL_STORMEVENTS_2019_0701_1231.h5 (id (N,), vil (N, 384, 384, 49) uint8 NHWT)\n"
        "One event per id, times time_utc + minute_offsets; 255 = missing is kept as the fill value and\n"
        "pct_missing > 0 is stored in the 'pct_missing' attribute; repeated ids follow --duplicates."
    )

    def __init__(self, src: str | Path, *, catalog: str = "CATALOG.csv", duplicates: str = "drop") -> None:
        super().__init__(src, catalog=catalog, duplicates=duplicates)
        if duplicates not in DUPLICATE_RULES:
            raise UsageError(f"sevir: duplicates={duplicates!r} is not one of {DUPLICATE_RULES}")
        self.catalog = self.src / catalog
        self.duplicates = duplicates

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--catalog", default="CATALOG.csv", help="catalogue CSV, relative to --src")
        parser.add_argument("--duplicates", choices=DUPLICATE_RULES, default="drop",
                            help="ids on several vil rows: drop them all (as the paper loaders) or keep the first")

    def spec(self) -> StoreSpec:
        rows = self._vil_rows(ConversionReport())
        pct = {str(r.id): float(r.pct_missing) for r in rows.itertuples() if r.pct_missing > 0}
        proj = str(rows["proj"].iloc[0]) if "proj" in rows and len(rows) else ""
        metadata = StoreMetadata(
            title="SEVIR VIL",
            source="MIT Lincoln Laboratory SEVIR, s3://sevir (CATALOG.csv, data/vil)",
            licence="Approved for public release, distribution unlimited (eie-sevir DISTRIBUTION_STATEMENT)",
            citation=(
                "Veillette, M. S., Samsi, S. and Mattioli, C. J. (2020): SEVIR: A Storm Event Imagery Dataset "
                "for Deep Learning Applications in Radar and Satellite Meteorology. NeurIPS 33."
            ),
            time_step_seconds=STEP_SECONDS,
            pixel_size_m=1000.0,
            projection=proj,
            extra={
                "pct_missing": pct,
                "duplicate_ids": self.duplicates,
                "event_time": "catalogue time_utc",
                "grid_note": "each event is its own 384 km x 384 km patch; corners are in CATALOG.csv",
            },
        )
        return StoreSpec(frame_shape=GRID, encoding=ENCODING, metadata=metadata)

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        rows = self._vil_rows(report)
        ids_by_file = {name: _file_ids(self.src / "data" / name, report) for name in rows["file_name"].unique()}
        refs = []
        for row in rows.itertuples():
            ids = ids_by_file[row.file_name]
            path = str(self.src / "data" / row.file_name)
            if ids is None:
                report.add(path, "event in an unusable file (see the file's entry)", "skipped", row.id)
            elif not 0 <= row.file_index < ids.size or ids[row.file_index] != row.id:
                found = ids[row.file_index] if 0 <= row.file_index < ids.size else "nothing"
                report.add(path, f"file_index {row.file_index} holds {found!r}, catalogue says {row.id!r}",
                           "skipped", row.id)
            else:
                info = {"file_index": int(row.file_index), "time_utc": str(row.time_utc),
                        "minute_offsets": str(row.minute_offsets)}
                refs.append(EventRef(name=row.id, files=(path,), info=info))
        return refs

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        path = ref.files[0]
        event_time = np.datetime64(ref.info["time_utc"], "s")
        try:
            offsets = np.array([float(v) for v in ref.info["minute_offsets"].split(":")])
        except ValueError:
            offsets = np.zeros(0)
        if offsets.size != N_FRAMES:
            report.add(path, f"minute_offsets {ref.info['minute_offsets']!r} do not give {N_FRAMES} frame times",
                       "skipped", ref.name)
            return None
        times = event_time + np.round(offsets * 60).astype(np.int64).astype("timedelta64[s]")
        try:
            with h5py.File(path, "r") as h5:
                vil = np.asarray(h5["vil"][ref.info["file_index"]])
        except (OSError, KeyError, ValueError) as err:
            report.add(path, f"cannot read vil[{ref.info['file_index']}]: {err}", "skipped", ref.name)
            return None
        axis, take, slot = to_regular_axis(times, STEP_SECONDS, report, file=path, event=ref.name)
        frames = np.full((axis.size, *GRID), MISSING, dtype=np.uint8)
        frames[slot] = np.moveaxis(vil, -1, 0)[take]
        blank = (frames == MISSING).all(axis=(1, 2))
        blank_present = int(blank[slot].sum())
        if blank_present:
            report.add(path, f"{blank_present} frame(s) entirely 255 (missing) marked invalid", "masked", ref.name)
        return EventData(name=ref.name, times=axis, frames=frames, frame_valid=~blank, event_time=event_time)

    def _vil_rows(self, report: ConversionReport) -> pd.DataFrame:
        """The catalogue's usable vil rows, duplicates resolved, sorted by ``time_utc`` then id."""
        rows = _read_catalog(self.catalog)
        rows = rows[rows["img_type"] == "vil"].copy()
        rows["id"] = rows["id"].astype(str)
        rows["time_utc"] = pd.to_datetime(rows["time_utc"], errors="coerce")
        rows["file_index"] = pd.to_numeric(rows["file_index"], errors="coerce")
        rows["pct_missing"] = pd.to_numeric(rows["pct_missing"], errors="coerce").fillna(0.0)
        unreadable = rows["time_utc"].isna() | rows["file_index"].isna()
        for row in rows[unreadable].itertuples():
            report.add(self.catalog, f"vil row for {row.id!r} has an unreadable time_utc or file_index",
                       "skipped", row.id)
        rows = rows[~unreadable].astype({"file_index": int})
        repeated = rows["id"].duplicated(keep="first" if self.duplicates == "first" else False)
        for row in rows[repeated].itertuples():
            report.add(self.catalog, f"id {row.id!r} appears on several vil rows ({row.file_name}, file_index "
                       f"{row.file_index}); rule --duplicates {self.duplicates}", "dropped_duplicate", row.id)
        return rows[~repeated].sort_values(["time_utc", "id"], kind="stable").reset_index(drop=True)


def _read_catalog(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise FileNotFoundError(f"sevir: catalogue {path} not found; pass --catalog or check --src")
    try:
        rows = pd.read_csv(path, low_memory=False)
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise UsageError(f"sevir: {path} is not a readable CSV ({type(err).__name__}: {err}); is it the SEVIR "
                         "CATALOG.csv? (pass --catalog)") from None
    missing = [c for c in CATALOG_COLUMNS if c not in rows.columns]
    if missing:
        raise UsageError(f"sevir: {path} lacks columns {missing}; is it the SEVIR CATALOG.csv?")
    return rows


def _file_ids(path: Path, report: ConversionReport) -> np.ndarray | None:
    """The ``id`` dataset of a vil file as str, or None (reported) if the file cannot be used."""
    expected = (GRID[0], GRID[1], N_FRAMES)
    try:
        with h5py.File(path, "r") as h5:
            vil, ids = h5["vil"], h5["id"]
            if vil.ndim != 4 or vil.shape[1:] != expected or vil.dtype != np.uint8:
                reason = f"vil is {vil.dtype} {vil.shape}, expected uint8 (N, {expected[0]}, {expected[1]}, {N_FRAMES})"
            elif ids.shape != (vil.shape[0],):
                reason = f"id has shape {ids.shape}, vil has {vil.shape[0]} events"
            else:
                return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ids[:]])
    except (OSError, KeyError) as err:
        reason = f"cannot open as SEVIR HDF5 ({err})"
    report.add(path, reason, "skipped")
    return None
