"""``nowcast-prep synthetic``: options parse with one-line errors; the store is the same in any order."""

import argparse
from pathlib import Path

import pytest

from data_prep.base import ConversionReport
from data_prep.errors import UsageError
from data_prep.synthetic import SyntheticConverter
from nowcast_pl.data import RadarStoreWriter
from nowcast_pl.data.synthetic import (
    SyntheticRadarConfig,
    write_synthetic_store,
)

SMALL = SyntheticRadarConfig(height=48, width=48, n_frames=8)


def store_bytes(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def test_converter_options_parse():
    parser = argparse.ArgumentParser()
    SyntheticConverter.add_arguments(parser)
    options = vars(
        parser.parse_args(
            ["--events", "5", "--seed", "3", "--frames", "8", "--size", "32", "--missing-frame-rate", "0.1"]
        )
    )
    converter = SyntheticConverter(**options)
    assert converter.name == "synthetic" and converter.src is None
    assert converter.spec().frame_shape == (32, 32)
    assert converter.config.n_frames == 8 and converter.config.missing_frame_rate == 0.1
    assert len(converter.list_events(ConversionReport())) == 5
    with pytest.raises(UsageError, match="--missing-frame-rate"):
        SyntheticConverter(missing_frame_rate=2.0)
    with pytest.raises(UsageError, match="--seed"):
        SyntheticConverter(seed=-1)


def test_converter_writes_the_same_store_in_any_order(tmp_path):
    converter = SyntheticConverter(tmp_path / "ignored", events=3, seed=5, frames=8, size=48)
    report = ConversionReport()
    refs = converter.list_events(report)
    assert [r.name for r in refs] == ["synthetic-0000", "synthetic-0001", "synthetic-0002"]
    data = {ref.name: converter.read_event(ref, report) for ref in reversed(refs)}
    spec = converter.spec()
    path = tmp_path / "conv.zarr"
    with RadarStoreWriter(path, frame_shape=spec.frame_shape, encoding=spec.encoding, metadata=spec.metadata) as writer:
        for ref in refs:
            event = data[ref.name]
            writer.append_event(event.name, event.times, event.frames, frame_valid=event.frame_valid)
    direct = write_synthetic_store(tmp_path / "direct.zarr", n_events=3, config=SMALL, seed=5)
    assert store_bytes(path) == store_bytes(direct)
    assert report.entries == []
