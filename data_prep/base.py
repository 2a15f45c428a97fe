"""The contract between a source converter and the conversion runner.

A converter knows one raw archive format. It describes the store it produces (:class:`StoreSpec`), lists the
events of the archive cheaply (:meth:`Converter.list_events`) and reads one event at a time
(:meth:`Converter.read_event`), possibly in a worker process. Problems with the input never stop the
conversion and never reach the store as garbage: a converter records them in the
:class:`ConversionReport` and skips the file (or masks the frame) instead. The runner
(:mod:`data_prep.runner`) does the rest: resume, parallel reading with bounded memory, writing, progress.
"""

from __future__ import annotations

import argparse
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nowcast_pl.data.schema import FrameEncoding, StoreMetadata

Action = Literal["skipped", "masked", "dropped_duplicate", "reordered", "filled_missing", "note"]


@dataclass(frozen=True)
class StoreSpec:
    """Everything the writer needs to create the store, known before any event is read.

    Args:
        frame_shape: (H, W) of every frame.
        encoding: raw encoding of the frames.
        metadata: dataset attributes (time step, pixel size, licence, citation ...).
        static_mask: optional (H, W) bool, True where pixels are usable in every frame.
        pixel_masks: whether events carry per-frame (T, H, W) ``pixel_valid`` masks.
        coords: optional projected ``{"y": (H,), "x": (W,)}`` coordinates in metres.
    """

    frame_shape: tuple[int, int]
    encoding: FrameEncoding
    metadata: StoreMetadata
    static_mask: np.ndarray | None = None
    pixel_masks: bool = False
    coords: dict[str, np.ndarray] | None = None


@dataclass(frozen=True)
class EventRef:
    """A cheap, picklable pointer to one event of the archive.

    Args:
        name: unique, stable event identifier (used to skip committed events on resume).
        files: the raw files the event is read from (for the report).
        info: anything else the converter needs to read the event (JSON-like values).
    """

    name: str
    files: tuple[str, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class EventData:
    """One event, ready to write.

    Args:
        name: the event's identifier.
        times: (T,) datetime64 frame times, strictly increasing, UTC.
        frames: (T, H, W) raw integers in the store's encoding; rows of missing frames may hold anything.
        frame_valid: (T,) bool, False for missing frames.
        pixel_valid: (T, H, W) bool per-frame masks, when the spec has ``pixel_masks``.
        event_time: the event's reference time (default: first frame).
    """

    name: str
    times: np.ndarray
    frames: np.ndarray
    frame_valid: np.ndarray | None = None
    pixel_valid: np.ndarray | None = None
    event_time: np.datetime64 | None = None


@dataclass(frozen=True)
class ReportEntry:
    file: str
    reason: str
    action: Action
    event: str = ""


@dataclass
class ConversionReport:
    """Machine-readable list of everything the conversion did not take as-is (written as JSON)."""

    entries: list[ReportEntry] = field(default_factory=list)

    def add(self, file: str | Path, reason: str, action: Action, event: str = "") -> None:
        self.entries.append(ReportEntry(str(file), reason, action, event))

    def extend(self, entries: Iterable[ReportEntry]) -> None:
        self.entries.extend(entries)

    def to_json(self) -> list[dict[str, str]]:
        return [asdict(e) for e in self.entries]

    def save(self, path: str | Path, summary: dict[str, Any]) -> None:
        Path(path).write_text(json.dumps({"summary": summary, "entries": self.to_json()}, indent=1))


class Converter(ABC):
    """One raw archive format → radar store.

    Subclasses set ``name`` (the sub-command, e.g. ``"sevir"``) and ``layout_help`` (the expected raw
    layout, shown by ``nowcast-prep <name> --help``), add their own options in :meth:`add_arguments`, and
    receive them as keyword arguments in ``__init__``.

    Args:
        src: root of the raw archive.
    """

    name: str = ""
    layout_help: str = ""

    def __init__(self, src: str | Path, **options: Any) -> None:
        self.src = Path(src)
        if not self.src.exists():
            raise FileNotFoundError(f"{self.name}: source {self.src} does not exist")
        self.options = options

    @classmethod  # noqa: B027 (an optional hook: converters without options keep it empty)
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add source-specific command-line options (their dest names become ``__init__`` kwargs)."""

    def content_options(self) -> dict[str, Any]:
        """The options that shape the store's content, by their ``__init__`` keyword (= command-line dest)
        names; recorded in the store so that a resumed conversion must use the same ones.

        The default is the keyword options given to ``__init__``; a converter keeping them elsewhere overrides it.
        """
        return dict(self.options)

    @abstractmethod
    def spec(self) -> StoreSpec:
        """Describe the store this archive converts to."""

    @abstractmethod
    def list_events(self, report: ConversionReport) -> list[EventRef]:
        """List the archive's events in the order they are written; record unusable files in ``report``."""

    @abstractmethod
    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData | None:
        """Read one event (may run in a worker process); None when nothing usable remains."""
