"""``nowcast-prep synthetic``: the embedded synthetic radar archive (no input files).

Event ``k`` is generated from ``(seed, k)`` alone by :func:`nowcast_pl.data.synthetic.synthetic_event`, so
parallel workers and resumed conversions write exactly what :func:`write_synthetic_store` writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from data_prep.base import ConversionReport, Converter, EventData, EventRef, StoreSpec
from data_prep.errors import UsageError
from nowcast_pl.data.synthetic import (
    SYNTHETIC_ENCODING,
    SyntheticRadarConfig,
    event_name,
    synthetic_event,
    synthetic_metadata,
)


class SyntheticConverter(Converter):
    """Generate a synthetic radar store; see :mod:`nowcast_pl.data.synthetic` for the model.

    Args:
        src: ignored (there is no source archive); may be None.
        events: number of events.
        seed: non-negative seed; the same seed and options give the same store.
        frames: frames per event (5-minute steps).
        size: grid side (px, 1 km each).
        missing_frame_rate: probability that a frame is marked missing.
        options: common runner options, kept in ``self.options``.
    """

    name = "synthetic"
    layout_help = (
        "no source archive: events are generated deterministically from --seed (--src is ignored)\n"
        "Event k is named synthetic-{k:04d} and starts on 2020-01-01 + k days (events 0-30 fall in January\n"
        "2020, 31-59 in February, 60-90 in March). Frames are reflectivity in uint8, dBZ = 70 * raw / 255 - 10\n"
        "(HKO-7 encoding), every 300 s on a 1 km grid."
    )

    def __init__(
        self,
        src: str | Path | None = None,
        *,
        events: int = 64,
        seed: int = 0,
        frames: int = 30,
        size: int = 128,
        missing_frame_rate: float = 0.0,
        **options: Any,
    ) -> None:
        if events < 0 or seed < 0:
            raise UsageError(f"synthetic: --events={events} and --seed={seed} must be non-negative")
        self.src = None if src is None else Path(src)
        self.options = options
        self.events = events
        self.seed = seed
        try:
            self.config = SyntheticRadarConfig(
                height=size, width=size, n_frames=frames, missing_frame_rate=missing_frame_rate
            )
        except ValueError as error:
            raise UsageError(f"synthetic: {error} (check --size, --frames, --missing-frame-rate)") from error

    def content_options(self) -> dict[str, Any]:
        config = self.config
        return {"events": self.events, "seed": self.seed, "frames": config.n_frames, "size": config.height,
                "missing_frame_rate": config.missing_frame_rate}

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--events", type=int, default=64, help="number of events (default 64)")
        parser.add_argument("--seed", type=int, default=0, help="non-negative random seed (default 0)")
        parser.add_argument("--frames", type=int, default=30, help="frames per event (default 30)")
        parser.add_argument("--size", type=int, default=128, help="grid side in pixels (default 128)")
        parser.add_argument("--missing-frame-rate", type=float, default=0.0,
                            help="probability that a frame is marked missing (default 0)")

    def spec(self) -> StoreSpec:
        return StoreSpec(
            frame_shape=(self.config.height, self.config.width),
            encoding=SYNTHETIC_ENCODING,
            metadata=synthetic_metadata(self.config, seed=self.seed),
        )

    def list_events(self, report: ConversionReport) -> list[EventRef]:
        return [EventRef(name=event_name(k), info={"index": k}) for k in range(self.events)]

    def read_event(self, ref: EventRef, report: ConversionReport) -> EventData:
        event = synthetic_event(self.config, seed=self.seed, index=int(ref.info["index"]))
        return EventData(name=event.name, times=event.times, frames=event.raw(), frame_valid=event.frame_valid)
