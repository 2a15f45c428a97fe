"""Run a converter into a radar store: resume, parallel reading with bounded memory, report.

:func:`convert` lists the archive's events, skips those already committed to the store (a killed conversion
resumes where it stopped), reads the others in worker processes and writes them in order in this process.
At most ``2 * workers`` events are read ahead, so the peak memory does not grow with the archive. Every
problem of the input ends in the report ``<dst>.report.json`` instead of stopping the conversion; a
conversion that writes no event at all fails (its report is still written) and leaves the store incomplete.

While a conversion runs, the report entries of each event are appended to ``<dst>.report.partial.jsonl``
before the event is committed, so that a resumed conversion still reports the events written before the
interruption; the file is removed once the final report is written.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from data_prep.base import ConversionReport, Converter, EventData, EventRef, ReportEntry
from data_prep.errors import UsageError
from data_prep.recorded_options import ATTRIBUTE, check_same_options, converter_record
from nowcast_pl.data.destination import check_destination, is_radar_store
from nowcast_pl.data.store import RadarStoreWriter

_worker_converter: Converter | None = None


def report_path(dst: str | Path) -> Path:
    """``<dst>.report.json``: the conversion report written next to the store."""
    dst = Path(dst)
    return dst.with_name(dst.name + ".report.json")


def _partial_path(dst: Path) -> Path:
    return dst.with_name(dst.name + ".report.partial.jsonl")


def _read(converter: Converter, ref: EventRef) -> tuple[EventData | None, list[ReportEntry]]:
    """Read one event; any exception becomes a report entry. Every entry is tagged with the event."""
    report = ConversionReport()
    try:
        data = converter.read_event(ref, report)
        if data is not None and data.name != ref.name:
            raise ValueError(f"converter returned event {data.name!r} for {ref.name!r}")
    except Exception as error:  # one bad event must not stop the conversion
        data = None
        report.add(ref.files[0] if ref.files else "", f"reading the event failed: {type(error).__name__}: "
                   f"{error}", "skipped", ref.name)
    return data, [e if e.event else replace(e, event=ref.name) for e in report.entries]


def _init_worker(converter: Converter) -> None:
    global _worker_converter
    _worker_converter = converter
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent shuts the pool


def _read_in_worker(ref: EventRef) -> tuple[EventData | None, list[ReportEntry]]:
    assert _worker_converter is not None, "worker not initialised"
    return _read(_worker_converter, ref)


class EventReader:
    """Reads events in order, in this process (``workers <= 1``) or in a pool of worker processes.

    The pool's processes are started on entering, before the caller opens the store: with the ``fork``
    start method they inherit every imported module (no start-up cost per worker), and no zarr I/O thread
    exists yet at fork time (forking a threaded process can deadlock). Without ``fork`` (macOS, Windows),
    ``forkserver``/``spawn`` is used.
    """

    def __init__(self, converter: Converter, workers: int) -> None:
        self.converter, self.workers = converter, workers
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> EventReader:
        if self.workers > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method),
                                            initializer=_init_worker, initargs=(self.converter,))
            self.pool.submit(int).result()  # start the workers now
        return self

    def __exit__(self, *_: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def read(self, refs: list[EventRef]) -> Iterator[tuple[EventRef, Any]]:
        """``(ref, (data, entries))`` in ``refs`` order, with at most ``2 * workers`` events read ahead."""
        if self.pool is None:
            for ref in refs:
                yield ref, _read(self.converter, ref)
            return
        pending: deque[tuple[EventRef, Future]] = deque()
        todo = iter(refs)
        for ref in todo:
            pending.append((ref, self.pool.submit(_read_in_worker, ref)))
            if len(pending) >= 2 * self.workers:
                break
        while pending:
            ref, future = pending.popleft()
            yield ref, future.result()
            for ref in todo:
                pending.append((ref, self.pool.submit(_read_in_worker, ref)))
                break


def _previous_entries(dst: Path, committed: set[str]) -> list[ReportEntry]:
    """Report entries of the events committed by an interrupted run (from its partial log)."""
    path = _partial_path(dst)
    if not path.exists() or not committed:
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = ReportEntry(**json.loads(line))
        except (ValueError, TypeError):  # a line cut by the interruption
            continue
        if entry.event in committed:
            entries.append(entry)
    return list(dict.fromkeys(entries))  # an event re-read after an interruption logged its entries twice


def check_apart(src: Path | None, dst: Path) -> None:
    """Refuse a destination that is, holds or lies inside the source archive (symbolic links resolved).

    Raises:
        UsageError: naming both paths, if they overlap.
    """
    if src is None:
        return
    source, store = src.resolve(), dst.resolve()
    if store == source:
        where = "is"
    elif source in store.parents:
        where = "lies inside"
    elif store in source.parents:
        where = "contains"
    else:
        return
    raise UsageError(f"--dst {dst} {where} the source archive --src {src}; a conversion never writes into (or "
                     "deletes) its source: choose a --dst outside --src")


def _store_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def convert(converter: Converter, dst: str | Path, *, workers: int = 1, overwrite: bool = False,
            progress: bool = True, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Convert an archive into the radar store ``dst`` (or finish an interrupted conversion).

    Args:
        converter: the source, constructed with its options.
        dst: store directory (``*.zarr``).
        workers: reader processes; 1 reads in this process.
        overwrite: delete an existing store (complete or not) first; only a radar store or an empty folder
            is ever deleted, and a symbolic link is removed rather than its target.
        progress: show a progress bar (stderr).
        options: the record of the options that shape the content (see :mod:`data_prep.recorded_options`);
            default: the converter's own.

    Returns:
        The summary written to ``<dst>.report.json`` (counts, frames, bytes, seconds).

    Raises:
        FileExistsError: if ``dst`` is a complete store and ``overwrite`` is False, or ``dst`` is neither
            absent, an empty folder nor a radar store (nothing is then written or deleted).
        StoreValidationError: if an unfinished store at ``dst`` was started with other settings.
        UsageError: if ``dst`` and the converter's ``src`` overlap, if an existing store at ``dst`` records
            other options, or if no event could be written (the report is saved, the store is left incomplete).
    """
    start = time.perf_counter()
    dst = Path(dst)
    check_apart(converter.src, dst)
    check_destination(dst)
    record = converter_record(converter) if options is None else options
    if not overwrite:
        check_same_options(dst, record)
    spec = converter.spec()
    metadata = replace(spec.metadata, extra={**spec.metadata.extra, ATTRIBUTE: record})
    report = ConversionReport()
    refs = converter.list_events(report)
    if overwrite:
        _partial_path(dst).unlink(missing_ok=True)
    for leftover in dst.rglob("*.partial") if is_radar_store(dst) and not overwrite else ():
        leftover.unlink()  # temporary files of zarr writes cut by a kill
    with EventReader(converter, workers) as readers:
        writer = RadarStoreWriter(dst, frame_shape=spec.frame_shape, encoding=spec.encoding,
                                  metadata=metadata, static_mask=spec.static_mask,
                                  pixel_masks=spec.pixel_masks, coords=spec.coords, overwrite=overwrite)
        resumed = {ref.name for ref in refs if writer.has_event(ref.name)}
        listed = set(report.entries)
        report.extend(e for e in _previous_entries(dst, resumed) if e not in listed)
        todo = [ref for ref in refs if ref.name not in resumed]
        counts = _write_events(readers.read(todo), writer, len(todo), report, progress, _partial_path(dst))
        summary = {
            "source": converter.name, "src": str(converter.src), "dst": str(dst), "workers": workers,
            "events_listed": len(refs), "events_resumed": len(resumed), **counts,
            "store_events": writer.n_events, "store_frames": writer.n_frames,
            "store_bytes": _store_bytes(dst), "seconds": round(time.perf_counter() - start, 3),
            "report_entries": len(report.entries),
            "entries_by_action": dict(Counter(e.action for e in report.entries)),
        }
        summary["source_mb_per_s"] = round(summary["source_bytes"] / 1e6 / max(summary["seconds"], 1e-9), 3)
        report.save(report_path(dst), summary)
        if writer.n_events == 0:
            source = "the source" if converter.src is None else converter.src
            raise UsageError(f"{converter.name}: no event of {source} could be converted; the "
                             f"{len(report.entries)} entries of {report_path(dst)} say why for each file; "
                             f"{dst} is left incomplete (check --src and the options, then rerun)")
        writer.finalize(conversion={k: summary[k] for k in ("source", "events_listed", "store_events",
                                                             "store_frames", "report_entries")},
                        conversion_report=report_path(dst).name)
    _partial_path(dst).unlink(missing_ok=True)
    return summary


def _write_events(events: Iterator[tuple[EventRef, Any]], writer: RadarStoreWriter, n_events: int,
                  report: ConversionReport, progress: bool, partial: Path) -> dict[str, int]:
    """Append the events read; log each event's entries to ``partial`` before committing it."""
    counts = Counter(events_written=0, events_empty=0, frames_written=0, frames_missing=0, source_bytes=0)
    bar = tqdm(total=n_events, unit="event", disable=not progress, dynamic_ncols=True)
    with bar, partial.open("a") as log:
        for ref, (data, entries) in events:
            _log(log, report, entries)
            if data is not None:
                try:
                    writer.append_event(data.name, data.times, data.frames, frame_valid=data.frame_valid,
                                        pixel_valid=data.pixel_valid, event_time=data.event_time)
                except ValueError as error:  # checked before anything is written: the store is unchanged
                    _log(log, report, [ReportEntry(ref.files[0] if ref.files else "", "the store rejected the "
                                                   f"event: {error}", "skipped", ref.name)])
                    data = None
            if data is None:
                counts["events_empty"] += 1
            else:
                counts["events_written"] += 1
                counts["frames_written"] += len(data.times)
                counts["frames_missing"] += 0 if data.frame_valid is None else int((~data.frame_valid).sum())
                counts["source_bytes"] += sum(Path(f).stat().st_size for f in ref.files if Path(f).is_file())
            bar.update()
    return dict(counts)


def _log(log: Any, report: ConversionReport, entries: list[ReportEntry]) -> None:
    """Add entries to the report and to the partial log, flushed before the event is committed."""
    log.writelines(json.dumps(asdict(e)) + "\n" for e in entries)
    log.flush()
    report.extend(entries)
