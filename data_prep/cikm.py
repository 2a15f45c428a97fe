"""CIKM AnalytiCup 2017 radar samples → radar store.

Raw layout (``shared/reference/datasets.md`` §5)::

    <src>/**/train.txt, testA.txt, testB.txt    one sample per line:
        <id>,<label>,<v0> <v1> … <v612059>      612,060 = 15 × 4 × 101 × 101 space-separated integers

A line's values reshape in C order to (T=15, heights=4, 101, 101): time is the outer axis and the heights
are 0.5, 1.5, 2.5 and 3.5 km. Values are 0–255 with −1 = missing; dBZ = p · 95/255 − 10 (IDA-LSTM). The
converter keeps one height (``--height-index``, default 2 = 2.5 km, the level of RainDiff's
``cikm_2.5km.h5``) and stores the raw values as int16 with −1 as the fill value, so nothing is changed.
The ``label`` (future rain at the centre site, mm) is not stored.

Each line is an event named ``<split>/<n>`` — ``train/00042`` is the 43rd sample line of ``train.txt`` — so
the official train/testA/testB split is kept and data configs select it with ``event_pattern``. Samples have
no absolute time: times are synthetic 6-minute steps, one sample per day from 2000-01-01
(:func:`data_prep.timeaxis.synthetic_starts`). Short or non-numeric lines and out-of-range values skip the
line; a frame that is entirely −1 is a missing frame; both are reported. Lines are located in
:meth:`CikmConverter.list_events` and read one at a time, so the 17 GB ``train.txt`` is never held in memory.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from data_prep.timeaxis import frame_times, synthetic_starts
from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

SPLITS = ("train", "testA", "testB")
SAMPLE_SHAPE = (15, 4, 101, 101)
HEIGHTS_KM = (0.5, 1.5, 2.5, 3.5)
STEP_SECONDS = 360
MISSING = -1

ENCODING = FrameEncoding(
    dtype="int16",
    units="dBZ",
    quantity="reflectivity",
    long_name="CIKM AnalytiCup 2017 radar reflectivity, raw level p",
    fill_value=MISSING,
    scale_factor=95 / 255,
    add_offset=-10.0,
    comment=(
        "dBZ = 95 p / 255 - 10 (IDA-LSTM evaluation); -1 = missing. value_range [-10, 85] gives the papers' "
        "p / 255; DiffCast then evaluates x 90 against 20, 30, 35, 40."
    ),
)


class CikmLineError(ValueError):
    """A CIKM line cannot be used; the message is the reason recorded in the conversion report."""


def parse_line(line: bytes, sample_shape: tuple[int, int, int, int] = SAMPLE_SHAPE) -> tuple[str, float, np.ndarray]:
    """Parse one CIKM text line.

    Args:
        line: ``b"<id>,<label>,<v0> <v1> …"``.
        sample_shape: (T, heights, H, W) of the values; (15, 4, 101, 101) for the real files.

    Returns:
        The sample id, its label (mm), and the values as (T, heights, H, W) int16 in −1…255.

    Raises:
        CikmLineError: if the line lacks the id/label fields, does not hold exactly T·heights·H·W integers,
            or has a value outside −1…255.
    """
    fields = line.split(b",", 2)
    if len(fields) != 3:
        raise CikmLineError("line is not '<id>,<label>,<values>'")
    try:
        label = float(fields[1])
    except ValueError as err:
        raise CikmLineError(f"label {fields[1][:20]!r} is not a number") from err
    expected = int(np.prod(sample_shape))
    with warnings.catch_warnings():  # a non-numeric token ends parsing early; the count check reports it
        warnings.simplefilter("ignore", DeprecationWarning)
        values = np.fromstring(fields[2], dtype=np.int32, sep=" ")
    if values.size != expected:
        raise CikmLineError(f"{values.size} integers before the end or a non-integer token, expected {expected} "
                            f"= {' x '.join(map(str, sample_shape))}")
    if values.min() < MISSING or values.max() > 255:
        raise CikmLineError(f"values {values.min()}..{values.max()} outside -1..255")
    return fields[0].decode(errors="replace").strip(), label, values.astype(np.int16).reshape(sample_shape)


class CikmConverter(Converter):
    """CIKM AnalytiCup 2017 ``train.txt``/``testA.txt``/``testB.txt`` → one store event per line.

    Args:
        src: folder searched recursively for the three text files.
        height_index: 0-based height level kept (0.5, 1.5, 2.5, 3.5 km); default 2 = 2.5 km.
        sample_shape: (T, heights, H, W) of a line; only tests use other values.

    Raises:
        UsageError: on a height index outside the sample, or a source without any of the three files.
    """

    name = "cikm"
    layout_help = (
        "CIKM AnalytiCup 2017 radar samples: text lines of 15 x 4 heights x 101 x 101 ints, 6 min\n"
        "  SRC/**/train.txt, SRC/**/testA.txt, SRC/**/testB.txt   ('<id>,<label>,<612060 ints>', -1 = missing)\n"
        "One event per line, named <split>/<n>; --height-index picks the level (2 = 2.5 km); times are synthetic."
    )

    def __init__(self, src: str | Path, *, height_index: int = 2,
                 sample_shape: tuple[int, int, int, int] = SAMPLE_SHAPE) -> None:
        super().__init__(src, height_index=height_index, sample_shape=sample_shape)
        self.sample_shape = tuple(int(s) for s in sample_shape)
        if len(self.sample_shape) != 4 or not 0 <= height_index < self.sample_shape[1]:
            raise UsageError(f"cikm: height_index={height_index} is not a height of samples {self.sample_shape}")
        self.height_index = height_index

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--height-index", dest="height_index", type=int, default=2,
                            help="height level kept: 0..3 = 0.5, 1.5, 2.5, 3.5 km (default 2)")

    def spec(self) -> StoreSpec:
        heights = HEIGHTS_KM if self.sample_shape[1] == len(HEIGHTS_KM) else ()
        metadata = StoreMetadata(
            title="CIKM AnalytiCup 2017 radar",
            source="Shenzhen Meteorological Bureau and Alibaba Group, CIKM AnalytiCup 2017 (Tianchi)",
            licence="for competition and research purposes only (Shenzhen Meteorological Bureau, Alibaba Group)",
            citation="CIKM AnalytiCup 2017: short-term quantitative precipitation forecasting, Shenzhen "
                     "Meteorological Bureau and Alibaba Group",
            time_step_seconds=STEP_SECONDS,
            pixel_size_m=1000.0,
            extra={"height_index": self.height_index,
                   "height_km": heights[self.height_index] if heights else None,
                   "synthetic_times": "6-min steps, one sample per day from 2000-01-01 (no absolute time)",
                   "event_names": "<split>/<0-based line number>, split in train, testA, testB"},
        )
        return StoreSpec(frame_shape=self.sample_shape[2:], encoding=ENCODING, metadata=metadata)

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        files = {split: next(self.src.rglob(f"{split}.txt"), None) for split in SPLITS}
        if not any(files.values()):
            raise UsageError(f"cikm: none of {', '.join(s + '.txt' for s in SPLITS)} under {self.src}")
        refs = []
        for split, path in files.items():
            if path is None:
                report.add(self.src / f"{split}.txt", "split file not found; split left out", "note")
                continue
            for line_no, (offset, length) in enumerate(_line_spans(path)):
                info = {"offset": offset, "length": length, "line": line_no}
                refs.append(EventRef(name=f"{split}/{line_no:05d}", files=(str(path),), info=info))
        starts = synthetic_starts([self.sample_shape[0]] * len(refs), STEP_SECONDS)
        for ref, start in zip(refs, starts, strict=True):
            ref.info["start"] = str(start)
        return refs

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        path = ref.files[0]
        with open(path, "rb") as handle:
            handle.seek(ref.info["offset"])
            line = handle.read(ref.info["length"])
        try:
            _, _, values = parse_line(line, self.sample_shape)
        except CikmLineError as err:
            report.add(path, f"line {ref.info['line']}: {err}; sample skipped", "skipped", ref.name)
            return None
        frames = values[:, self.height_index]
        valid = ~(frames == MISSING).all(axis=(1, 2))
        if not valid.any():
            report.add(path, f"line {ref.info['line']}: every frame is -1 (missing)", "skipped", ref.name)
            return None
        if not valid.all():
            report.add(path, f"line {ref.info['line']}: {int((~valid).sum())} frame(s) entirely -1 recorded "
                       "as missing", "masked", ref.name)
        times = frame_times(np.datetime64(ref.info["start"]), frames.shape[0], STEP_SECONDS)
        return EventData(name=ref.name, times=times, frames=frames, frame_valid=valid)


def _line_spans(path: Path) -> list[tuple[int, int]]:
    """(byte offset, length) of every non-blank line, found by one sequential pass over the file."""
    spans, offset = [], 0
    with open(path, "rb") as handle:
        for line in handle:
            if line.strip():
                spans.append((offset, len(line)))
            offset += len(line)
    return spans
