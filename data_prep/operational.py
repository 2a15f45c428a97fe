"""Operational radar composites (one file per time step) read through pysteps' importers.

:class:`OperationalConverter` does what every such archive needs: find files by a time pattern, order them
on a regular time grid (:mod:`data_prep.timeline`), read each file with a pysteps importer, and encode the
float field into integers (:mod:`data_prep.units`). The formats themselves (importer, default file pattern,
licence) are small subclasses in :mod:`data_prep.composites`.

Times are taken from the file names, i.e. the nominal time of the product; for accumulations that is the end
of the accumulation period (pysteps and the producers name files that way). Problems never stop a
conversion: an unreadable file, a frame of the wrong grid or a frame without any data becomes a missing
frame (``frame_valid`` False) and a report entry; a frame's out-of-range values are clipped and reported.
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.patterns import Discovery, TimePattern
from data_prep.timeline import Grid, build_events, infer_step_seconds, order_files
from data_prep.units import encode_clipped, encoding_for_unit, rain_quantity, rain_to_dbz
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata
from nowcast_pl.data.units import same_units
from nowcast_pl.pysteps_import import import_pysteps

PYSTEPS_CITATION = (
    "Pulkkinen et al. (2019), Pysteps: an open-source Python library for probabilistic precipitation "
    "nowcasting (v1.0), Geosci. Model Dev. 12, 4185-4219"
)
DEFAULT_ZR = (200.0, 1.6)  # Marshall-Palmer, where the importer states no Z-R relation


@functools.cache
def pysteps_importer(name: str) -> Any:
    """The pysteps importer ``import_<name>``; pysteps' banner on import is silenced."""
    return import_pysteps("pysteps.io").get_method(name, "importer")


class OperationalConverter(Converter):
    """Base of the per-format converters; a subclass sets the class attributes below.

    Args:
        src: archive root; files are found under it by ``path_fmt/fn_pattern.fn_ext``.
        path_fmt: directory pattern, e.g. ``"%Y%m%d"`` ("" for files directly under ``src``).
        fn_pattern: file-name pattern without extension (strftime directives, ``?`` and ``*``).
        fn_ext: file extension, e.g. ``"pgm.gz"``.
        timestep: time step in minutes; default: the most common interval between files.
        max_gap: longest run of missing steps kept inside an event as missing frames.
        max_event_frames: longest event (frames); longer runs continue in a new event.
        to_dbz: convert rain rate/accumulation to reflectivity with ``Z = zr_a R^zr_b``.
        zr_a, zr_b: Z-R coefficients; default: the importer's (e.g. KNMI 200/1.6), else Marshall-Palmer.
        licence, citation: override the format's default terms (e.g. for another ODIM producer).
        options: format-specific importer options (see the subclass).
    """

    importer = ""
    path_fmt = ""
    fn_pattern = ""
    fn_ext = ""
    title = ""
    institution = ""
    licence = ""
    citation = ""

    def __init__(self, src: str | Path, *, path_fmt: str | None = None, fn_pattern: str | None = None,
                 fn_ext: str | None = None, timestep: float | None = None, max_gap: int = 1,
                 max_event_frames: int = 144, to_dbz: bool = False, zr_a: float | None = None,
                 zr_b: float | None = None, licence: str | None = None, citation: str | None = None,
                 **options: Any) -> None:
        super().__init__(src, **options)
        if not self.src.is_dir():
            raise UsageError(f"{self.name}: --src {self.src} is not a directory (give the archive root)")
        parts = [path_fmt if path_fmt is not None else self.path_fmt,
                 (fn_pattern if fn_pattern is not None else self.fn_pattern)
                 + "." + (fn_ext if fn_ext is not None else self.fn_ext)]
        try:
            self.pattern = TimePattern("/".join(p.strip("/") for p in parts if p.strip("/")))
        except ValueError as error:
            raise UsageError(f"{self.name}: {error} (set --path-fmt/--fn-pattern/--fn-ext)") from None
        if timestep is not None and timestep <= 0 or max_gap < 0 or max_event_frames < 1:
            raise UsageError(f"{self.name}: need --timestep > 0, --max-gap >= 0 and --max-event-frames >= 1")
        self.timestep_seconds = None if timestep is None else int(round(timestep * 60))
        self.max_gap, self.max_event_frames = max_gap, max_event_frames
        self.to_dbz, self.zr = to_dbz, (zr_a, zr_b)
        self.licence = licence or self.licence
        self.citation = citation or self.citation
        self._content = {"path_fmt": path_fmt, "fn_pattern": fn_pattern, "fn_ext": fn_ext, "timestep": timestep,
                         "max_gap": max_gap, "max_event_frames": max_event_frames, "to_dbz": to_dbz, "zr_a": zr_a,
                         "zr_b": zr_b, "licence": licence, "citation": citation, **options}
        self._discovery: Discovery | None = None
        self._spec: StoreSpec | None = None
        self._unit = ""
        self._accutime = 0.0

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("operational archive options")
        for option, what, default in (("--path-fmt", "directory pattern under --src", cls.path_fmt),
                                      ("--fn-pattern", "file-name pattern", cls.fn_pattern),
                                      ("--fn-ext", "file extension", cls.fn_ext)):
            group.add_argument(option, help=f"{what} (default {default!r})".replace("%", "%%"))
        group.add_argument("--timestep", type=float, help="time step in minutes (default: inferred)")
        group.add_argument("--max-gap", type=int, default=1, help="longest run of missing steps kept as "
                           "missing frames inside an event; longer gaps split events (default 1)")
        group.add_argument("--max-event-frames", type=int, default=144,
                           help="frames per event at most (default 144)")
        group.add_argument("--to-dbz", action="store_true",
                           help="store rain rate/accumulation as reflectivity, dBZ = 10 log10(a R^b)")
        group.add_argument("--zr-a", type=float, help="a of Z = a R^b (default: the importer's, else 200)")
        group.add_argument("--zr-b", type=float, help="b of Z = a R^b (default: the importer's, else 1.6)")
        group.add_argument("--licence", help="licence of the data (default: the format's)")
        group.add_argument("--citation", help="how to cite the data (default: the format's)")

    def content_options(self) -> dict[str, Any]:
        return dict(self._content)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_discovery": None}

    def importer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the pysteps importer (format-specific)."""
        return {}

    def import_file(self, path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
        """(H, W) float64 field (NaN = no data) and metadata, from the pysteps importer."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmin of an all-NaN field
            precip, _, meta = pysteps_importer(self.importer)(str(path), **self.importer_kwargs())
        return np.ma.filled(np.ma.asarray(precip, dtype=np.float64), np.nan), meta

    def read_field(self, path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
        """The field of one frame; a format may override it with a faster reader giving the same values."""
        return self.import_file(path)

    def producer(self, first: Path) -> tuple[str, str]:
        """(title, institution) of the store; a format whose files name their producer reads them here."""
        return self.title, self.institution

    def native_encoding(self, meta: dict[str, Any], first: Path) -> FrameEncoding:
        """Store encoding of the importer's unit (a format with its own integer encoding overrides it)."""
        return encoding_for_unit(meta["unit"], self.title)

    def grid_coords(self, meta: dict[str, Any], shape: tuple[int, int], first: Path) -> dict[str, np.ndarray]:
        """(H,) ``y`` and (W,) ``x`` pixel-centre coordinates in metres from pysteps' x1/x2/y1/y2 edges."""
        metres = 1000.0 if meta.get("cartesian_unit") == "km" else 1.0
        x1, x2, y1, y2 = (float(meta[k]) * metres for k in ("x1", "x2", "y1", "y2"))
        (h, w), up = shape, meta.get("yorigin", "upper") == "upper"
        x = x1 + (np.arange(w) + 0.5) * (x2 - x1) / w
        y = (y2 - (np.arange(h) + 0.5) * (y2 - y1) / h) if up else y1 + (np.arange(h) + 0.5) * (y2 - y1) / h
        return {"y": y, "x": x}

    def discovery(self) -> Discovery:
        if self._discovery is None:
            self._discovery = self.pattern.discover(self.src)
            if not self._discovery.matches:
                raise UsageError(f"{self.name}: no file under {self.src} matches {self.pattern.pattern!r} "
                                 "(check --src, --path-fmt, --fn-pattern and --fn-ext; see --help)")
        return self._discovery

    def _step_seconds(self) -> int:
        if self.timestep_seconds is not None:
            return self.timestep_seconds
        try:
            return infer_step_seconds(order_files(self.discovery().matches, ConversionReport()))
        except ValueError as error:
            raise UsageError(f"{self.name}: {error}") from None

    def spec(self) -> StoreSpec:
        if self._spec is None:
            self._spec = self._make_spec()
        return self._spec

    def _make_spec(self) -> StoreSpec:
        first, values, meta = self._first_readable()
        self.title, self.institution = self.producer(first)
        self._unit, self._accutime = meta.get("unit", ""), float(meta.get("accutime") or 0.0)
        if self.to_dbz:
            try:
                rain_quantity(self._unit)
            except ValueError:
                raise UsageError(f"{self.name}: --to-dbz converts rain (mm/h or mm) but {first} is in "
                                 f"{self._unit!r}; drop --to-dbz") from None
            a, b = (self.zr[0] or meta.get("zr_a") or DEFAULT_ZR[0], self.zr[1] or meta.get("zr_b") or DEFAULT_ZR[1])
            self.zr = (float(a), float(b))
            comment = f"converted from {self._unit} with Z = {a:g} R^{b:g} (R in mm/h); dry pixels = -32 dBZ"
            encoding = encoding_for_unit("dBZ", self.title, comment)
        else:
            encoding = self.native_encoding(meta, first)
        metres = 1000.0 if meta.get("cartesian_unit") == "km" else 1.0
        pixel = meta.get("xpixelsize")
        extra = {"institution": self.institution, "importer": f"pysteps.io.importers.import_{self.importer}",
                 "pysteps_version": importlib.metadata.version("pysteps"), "file_pattern": self.pattern.pattern,
                 "time_convention": "nominal product time from the file name (end of the accumulation period "
                                    "for accumulations)"}
        if self._accutime and same_units(self._unit, "mm"):
            extra["accumulation_minutes"] = self._accutime
        metadata = StoreMetadata(
            title=self.title, source=f"{self.institution}; read with pysteps import_{self.importer}",
            licence=self.licence, citation=self.citation, time_step_seconds=self._step_seconds(),
            pixel_size_m=None if pixel is None else float(pixel) * metres,
            projection=str(meta.get("projection") or ""), extra=extra,
        )
        shape = (int(values.shape[0]), int(values.shape[1]))
        return StoreSpec(frame_shape=shape, encoding=encoding, metadata=metadata,
                         coords=self.grid_coords(meta, shape, first))

    def _first_readable(self) -> tuple[Path, np.ndarray, dict[str, Any]]:
        errors = []
        for match in order_files(self.discovery().matches, ConversionReport())[:20]:
            try:
                values, meta = self.import_file(match.path)
            except Exception as error:  # any unreadable file: try the next one
                errors.append(f"{match.path}: {type(error).__name__}: {error}")
                continue
            if values.ndim == 2:
                return match.path, values, meta
            errors.append(f"{match.path}: field of shape {values.shape} is not 2-D")
        raise UsageError(f"{self.name}: none of the first files under {self.src} could be read; "
                         f"first error: {errors[0]}")

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        self.spec()
        found = self.discovery()
        for path, reason in found.rejected:
            report.add(path, reason, "skipped")
        grid = Grid(self._step_seconds(), self.max_gap, self.max_event_frames)
        files = order_files(found.matches, report)
        return build_events(files, grid, report, prefix=self.name,
                            expected_path=lambda t: str(self.src / self.pattern.format(t)))

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        spec = self.spec()
        paths = ref.info["paths"]
        frames = np.full((len(paths), *spec.frame_shape), spec.encoding.fill_value, dtype=spec.encoding.dtype)
        valid = np.array([bool(p) and self._read_into(p, frames[i], report, ref.name) for i, p in enumerate(paths)])
        if not valid.any():
            report.add(ref.files[0] if ref.files else "", "no readable frame in this event", "skipped", ref.name)
            return None
        first, last = np.flatnonzero(valid)[[0, -1]]
        keep = slice(int(first), int(last) + 1)
        times = np.asarray(ref.info["times"], dtype="datetime64[s]")
        return EventData(name=ref.name, times=times[keep], frames=frames[keep], frame_valid=valid[keep])

    def _read_into(self, path: str, out: np.ndarray, report: ConversionReport, event: str) -> bool:
        """Read, convert and encode one file into ``out`` (H, W); False (and a report entry) if unusable."""
        try:
            values, meta = self.read_field(path)
        except Exception as error:  # a corrupt file must not stop the conversion
            report.add(path, f"unreadable ({type(error).__name__}: {error}); stored as a missing frame",
                       "skipped", event)
            return False
        if values.shape != out.shape:
            report.add(path, f"grid {values.shape} differs from the archive's {out.shape}; stored as a "
                       "missing frame", "skipped", event)
            return False
        if np.isnan(values).all():
            report.add(path, "no valid pixel (all no-data); stored as a missing frame", "masked", event)
            return False
        if self.to_dbz:
            accutime = float(meta.get("accutime") or self._accutime)
            values = rain_to_dbz(values, self._unit, accutime_minutes=accutime, zr_a=self.zr[0],
                                 zr_b=self.zr[1], floor_dbz=self.spec().encoding.add_offset)
        out[...], n_clipped = encode_clipped(values, self.spec().encoding)
        if n_clipped:
            report.add(path, f"{n_clipped} values outside the encodable range were clipped", "note", event)
        return True
