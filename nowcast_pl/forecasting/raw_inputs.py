"""The newest raw radar files (any one-file-per-time source of ``nowcast-prep``) as a model's observed frames.

The files are read by the source's own converter (:mod:`data_prep.composites`), with the source's options
parsed as ``nowcast-prep <source>`` parses them, so a file reads here exactly as it does into a store. The
frames needed are picked first, by the times in the file names: the ``in_frames`` newest, or those ending
at ``time``. Only those files are linked into a temporary folder, which the converter then reads as its
archive (its events, its report), so no frame is read twice and no second reader exists.

``inputs`` is either one folder (the archive root, as ``nowcast-prep --src``; files are found with the
source's ``--path-fmt``/``--fn-pattern``/``--fn-ext``) or a list of files (their names must match the file-name
pattern; the folder pattern is not used). Everything the model cannot take is refused with one line naming
the file and the fix (:class:`~nowcast_pl.forecasting.inputs.InputError`): a time step other than the
model's, a missing or duplicated frame, a file that does not read, another grid (shape or coordinates) than
the first frame's, values in another unit.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.base import ConversionReport
from data_prep.errors import UsageError
from data_prep.operational import OperationalConverter
from data_prep.patterns import Match, TimePattern
from data_prep.registry import get_converter
from nowcast_pl.data.georef import ModelGrid
from nowcast_pl.data.units import same_units
from nowcast_pl.forecasting.inputs import InputError, ModelInputs, ObservedFrames, convert_units

UNUSABLE = ("skipped", "masked", "dropped_duplicate", "filled_missing")


def read_raw_inputs(source: str, inputs: Sequence[str | Path], options: dict[str, Any], model: ModelInputs, *,
                    time: dt.datetime | None = None, to_rain: bool = False) -> ObservedFrames:
    """The ``model.in_frames`` frames ending at ``time`` (default: the newest file's time).

    Args:
        source: a ``nowcast-prep`` source of one file per time (``fmi``, ``bom``, ``knmi``, ``mch``, ``odim``).
        inputs: one archive folder, or files.
        options: the source's options by their ``__init__`` names, as ``nowcast-prep <source>`` parses them
            (``to_dbz``, ``zr_a``, ``fn_pattern``, ``qty``, ...).
        model: what the model expects.
        time: UTC time of the last frame (naive or aware); None for the newest.
        to_rain: convert reflectivity to the model's rain quantity with ``Z = a R^b`` (``zr_a``, ``zr_b``).

    Raises:
        InputError: naming the file and the fix, for frames the model cannot take.
        UsageError: for an unknown source, a source that is not one file per time, or bad source options.
    """
    cls = _operational_class(source)
    if to_rain and options.get("to_dbz"):
        raise UsageError("--to-dbz and --to-rain convert in opposite directions; give at most one")
    files = [Path(p) for p in inputs]
    for path in files:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder (check --inputs)")
    timestep = options.get("timestep")
    if timestep is not None and round(float(timestep) * 60) != model.step_seconds:
        raise InputError(f"--timestep {timestep:g} min differs from the model's {model.step_minutes:g} min time "
                         "step; drop --timestep (the model forecasts only at its own step)")
    matches, flat = _find(cls, files, options)
    window = select_window(matches, model, time=_naive_utc(time))
    options = {**options, "timestep": model.step_minutes, **({"path_fmt": ""} if flat else {})}
    with tempfile.TemporaryDirectory(prefix="nowcast-forecast-") as staging:
        links = _link(window, Path(staging), files[0] if not flat else None)
        converter = cls(staging, **options)
        return _read(converter, links, model, to_rain=to_rain, to_dbz=bool(options.get("to_dbz")),
                     zr=(options.get("zr_a"), options.get("zr_b")))


def _operational_class(source: str) -> type[OperationalConverter]:
    try:
        cls = get_converter(source)
    except KeyError as error:
        raise UsageError(f"--source: {error.args[0]}") from None
    if not issubclass(cls, OperationalConverter):
        raise UsageError(f"--source {source}: its archives hold events, not one file per time; convert it with "
                         f"`nowcast-prep {source}` and forecast from the store (--store STORE --time TIME)")
    return cls


def _find(cls: type[OperationalConverter], files: list[Path], options: dict[str, Any]) -> tuple[list[Match], bool]:
    """The candidate files with their times, and whether they were given one by one (``flat``)."""
    if len(files) == 1 and files[0].is_dir():
        try:
            return cls(files[0], **options).discovery().matches, False
        except UsageError as error:
            raise InputError(str(error)) from None
    folders = [str(p) for p in files if p.is_dir()]
    if folders:
        raise InputError(f"--inputs: give one archive folder or files, not both ({folders[0]} is a folder)")
    pattern = _file_name_pattern(cls, options)
    matches = []
    for path in files:
        try:
            matches.append(Match(path, pattern.parse(path.name)))
        except ValueError:
            raise InputError(f"{path}: the name does not match the {cls.name} file pattern {pattern.pattern!r}, "
                             "which gives its time; rename it or pass --fn-pattern/--fn-ext") from None
    return matches, True


def _file_name_pattern(cls: type[OperationalConverter], options: dict[str, Any]) -> TimePattern:
    name = (options.get("fn_pattern") or cls.fn_pattern) + "." + (options.get("fn_ext") or cls.fn_ext)
    try:
        return TimePattern(name)
    except ValueError as error:
        raise UsageError(f"{cls.name}: {error}; a file name must give the date and time (set --fn-pattern)") from None


def select_window(matches: Sequence[Match], model: ModelInputs, *, time: dt.datetime | None) -> list[Match]:
    """The ``model.in_frames`` files ``model.step_seconds`` apart ending at ``time`` (default: the newest).

    Args:
        matches: candidate files and their (naive UTC) times, in any order.
        model: frames and time step wanted.
        time: time of the last frame, or None.

    Raises:
        InputError: when there is no file, a file at another step than the model's, a missing frame, or two
            files for one time.
    """
    if not matches:
        raise InputError("--inputs: no radar file found (check --inputs and the source's file pattern)")
    ordered = sorted(matches, key=lambda m: (m.time, str(m.path)))
    end = time or ordered[-1].time
    if time is not None and all(m.time != time for m in ordered):
        raise InputError(f"--time {time:%Y-%m-%d %H:%M}: no input file for that time (the files run from "
                         f"{ordered[0].time:%Y-%m-%d %H:%M} to {ordered[-1].time:%Y-%m-%d %H:%M} UTC)")
    _check_step([m for m in ordered if m.time <= end], model, end)
    step = dt.timedelta(seconds=model.step_seconds)
    wanted = [end - k * step for k in reversed(range(model.in_frames))]
    window = []
    for when in wanted:
        found = [m for m in ordered if m.time == when]
        if len(found) > 1:
            raise InputError(f"{found[1].path}: same time {when:%Y-%m-%d %H:%M} as {found[0].path}; give one "
                             "file per time")
        if not found:
            raise InputError(f"missing frame {when:%Y-%m-%d %H:%M} UTC: the model needs {model.in_frames} "
                             f"consecutive frames {model.step_minutes:g} min apart ending at {end:%Y-%m-%d %H:%M}; "
                             "add that file or pass an earlier --time")
        window.append(found[0])
    return window


def _check_step(earlier: list[Match], model: ModelInputs, end: dt.datetime) -> None:
    """Refuse files whose usual interval (over the newest ``in_frames`` times) is not the model's time step."""
    times = sorted({m.time for m in earlier})[-model.in_frames:]
    intervals = Counter(int((b - a).total_seconds()) for a, b in zip(times, times[1:], strict=False))
    if not intervals:
        return
    usual, _ = intervals.most_common(1)[0]
    if usual != model.step_seconds:
        last = next(m.path for m in reversed(earlier) if m.time == end)
        raise InputError(f"{last}: the input files are {usual / 60:g} min apart, the model's time step is "
                         f"{model.step_minutes:g} min; give files {model.step_minutes:g} min apart")


def _link(window: list[Match], staging: Path, root: Path | None) -> dict[Path, Path]:
    """Symbolic links to the window's files under ``staging`` (relative to ``root``, or flat); link → file."""
    links = {}
    for match in window:
        link = staging / (match.path.relative_to(root) if root is not None else match.path.name)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(match.path.resolve())
        links[link] = match.path
    return links


def _read(converter: OperationalConverter, links: dict[Path, Path], model: ModelInputs, *, to_rain: bool,
          to_dbz: bool, zr: tuple[float | None, float | None]) -> ObservedFrames:
    """Read the linked files through the converter and check them against the model."""
    report = ConversionReport()
    original = {str(link): str(path) for link, path in links.items()}
    try:
        spec = converter.spec()
        events = converter.list_events(report)
        event = converter.read_event(events[0], report) if len(events) == 1 else None
    except UsageError as error:
        raise InputError(_named(str(error), original)) from None
    for entry in report.entries:
        if entry.action in UNUSABLE:
            raise InputError(f"{original.get(entry.file, entry.file)}: {_reason(entry.reason)}")
    if event is None or event.frames.shape[0] != model.in_frames or not np.all(event.frame_valid):
        raise InputError(f"{next(iter(links.values()))}: the {converter.name} converter did not read the "
                         f"{model.in_frames} selected files as one run of frames; check them with nowcast-prep")
    _check_same_grid(converter, list(links), spec.coords, original)
    values = spec.encoding.decode(event.frames)
    units, note = spec.encoding.units, spec.encoding.comment if to_dbz else ""
    first = str(next(iter(links.values())))
    if to_dbz and not same_units(model.units, "dBZ"):
        raise InputError(f"{first}: --to-dbz makes reflectivity but the model takes {model.units!r}; drop --to-dbz")
    values, converted = convert_units(values, units, model, where=first, to_rain=to_rain, zr=zr,
                                      accutime_minutes=spec.metadata.extra.get("accumulation_minutes"))
    extra = spec.metadata.extra
    attrs = {"title": spec.metadata.title, "institution": str(extra.get("institution", "")),
             "source": spec.metadata.source, "licence": spec.metadata.licence, "citation": spec.metadata.citation}
    if note or converted:
        attrs["input_conversion"] = "; ".join(n for n in (note, converted) if n)
    coords = spec.coords or {}
    grid = ModelGrid(coords.get("y"), coords.get("x"), spec.metadata.projection, bool(coords))
    return ObservedFrames(values=values, times=event.times.astype("datetime64[s]"), units=model.units, grid=grid,
                          files=tuple(str(p) for p in links.values()), attrs=attrs)


def _check_same_grid(converter: OperationalConverter, links: list[Path], coords: dict[str, np.ndarray] | None,
                     original: dict[str, str]) -> None:
    """Refuse a frame whose pixel coordinates differ from the first frame's (same shape, another grid)."""
    if not coords:
        return
    for link in links[1:]:
        values, meta = converter.read_field(link)
        theirs = converter.grid_coords(meta, values.shape, link)
        if any(not np.allclose(theirs[k], coords[k], rtol=0, atol=1e-3) for k in ("y", "x")):
            raise InputError(f"{original[str(link)]}: its grid (pixel coordinates) differs from that of "
                             f"{original[str(links[0])]}; give frames of one radar product on one grid")


def _named(message: str, original: dict[str, str]) -> str:
    """A converter's message with staging paths replaced by the files the user gave."""
    for link, path in original.items():
        message = message.replace(link, path)
    return message


def _reason(reason: str) -> str:
    """A converter's report reason, with its 'stored as ...' tail turned into the fix for a forecast."""
    reason = reason.split("; stored as")[0]
    if "grid" in reason:
        return f"{reason}; give frames of one radar product on one grid"
    if "unreadable" in reason:
        return f"{reason}; replace the file (a truncated download?)"
    return f"{reason}; give frames with data"


def _naive_utc(time: dt.datetime | None) -> dt.datetime | None:
    if time is None or time.tzinfo is None:
        return time
    return time.astimezone(dt.timezone.utc).replace(tzinfo=None)
