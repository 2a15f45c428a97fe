"""Synthetic radar: determinism, a valid store, plausible dBZ statistics, real motion and life cycles."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from nowcast_pl.data import RadarStore
from nowcast_pl.data.synthetic import (
    MAX_DBZ,
    MIN_DBZ,
    SyntheticRadarConfig,
    generate_event,
    synthetic_event,
    write_synthetic_store,
)

SMALL = SyntheticRadarConfig(height=48, width=48, n_frames=8)
DEFAULT = SyntheticRadarConfig()
STILL = SyntheticRadarConfig(speed_px=(0.0, 0.0), rotation_deg=(0.0, 0.0), cell_drift_px=0.0)


def store_bytes(path: Path) -> dict[str, bytes]:
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def events(config: SyntheticRadarConfig, n: int, seed: int = 0) -> np.ndarray:
    """(n, T, H, W) dBZ of events 0..n-1."""
    return np.stack([synthetic_event(config, seed=seed, index=k).dbz for k in range(n)])


def best_shift(a: np.ndarray, b: np.ndarray, max_shift: int) -> np.ndarray:
    """Integer (dy, dx) maximising the cross-correlation of ``b`` with ``a`` shifted by it."""
    a, b = a - a.mean(), b - b.mean()
    corr = np.fft.irfft2(np.fft.rfft2(b) * np.conj(np.fft.rfft2(a)), s=a.shape)
    shifts = np.arange(-max_shift, max_shift + 1)
    window = corr[np.ix_(shifts % a.shape[0], shifts % a.shape[1])]
    i, j = np.unravel_index(np.argmax(window), window.shape)
    return np.array([shifts[i], shifts[j]])


@pytest.fixture(scope="module")
def default_events() -> np.ndarray:
    return events(DEFAULT, 12)


def test_event_shape_range_and_no_nan():
    dbz = generate_event(DEFAULT, np.random.default_rng(0))
    assert dbz.shape == (30, 128, 128) and dbz.dtype == np.float32
    assert np.isfinite(dbz).all()
    assert dbz.min() == MIN_DBZ == -10.0 and dbz.max() <= MAX_DBZ < 60.0


def test_same_seed_gives_identical_store_and_other_seed_differs(tmp_path):
    a = write_synthetic_store(tmp_path / "a.zarr", n_events=3, config=SMALL, seed=7)
    b = write_synthetic_store(tmp_path / "b.zarr", n_events=3, config=SMALL, seed=7)
    c = write_synthetic_store(tmp_path / "c.zarr", n_events=3, config=SMALL, seed=8)
    assert store_bytes(a) == store_bytes(b)
    frames = [RadarStore(p).read_raw(0, 24) for p in (a, c)]
    assert not np.array_equal(*frames)


def test_events_are_independent_of_order_and_of_each_other():
    first = synthetic_event(SMALL, seed=3, index=1).dbz
    np.testing.assert_array_equal(first, synthetic_event(SMALL, seed=3, index=1).dbz)
    assert not np.array_equal(first, synthetic_event(SMALL, seed=3, index=0).dbz)


@pytest.mark.filterwarnings("ignore:Failed to open Zarr store with consolidated metadata")
def test_store_validates_and_opens_with_plain_xarray(tmp_path):
    path = write_synthetic_store(tmp_path / "s.zarr", n_events=3, config=SMALL, seed=0)
    store = RadarStore(path)
    assert store.attrs["title"] == "nowcast_pl synthetic radar"
    assert store.attrs["licence"] == "CC0-1.0 (generated)"
    assert store.attrs["time_step_seconds"] == 300 and store.attrs["pixel_size_m"] == 1000.0
    assert list(store.event_names) == ["synthetic-0000", "synthetic-0001", "synthetic-0002"]
    starts = store.event_times.astype("datetime64[D]").astype(str).tolist()
    assert starts == ["2020-01-01", "2020-01-02", "2020-01-03"]
    ds = xr.open_zarr(path)
    frames = ds["frames"].values
    assert ds["frames"].attrs["units"] == "dBZ" and frames.shape == (24, 48, 48)
    assert np.isfinite(frames).all()
    assert frames.min() >= -10.0 and frames.max() <= 60.0
    assert np.all(np.diff(ds["time"].values[:8]) == np.timedelta64(300, "s"))


def test_dbz_distribution_is_plausible(default_events):
    dbz = default_events
    no_rain = (dbz < 5.0).mean()
    assert 0.45 < no_rain < 0.8
    assert (dbz < MIN_DBZ + 0.5).mean() > 0.15  # a dry floor (raw 0..1), not just weak echo
    assert 0.005 < (dbz >= 35.0).mean() < 0.1
    assert (dbz >= 50.0).mean() < 0.01
    wet = dbz[dbz >= 5.0]
    p10, p50, p99 = np.percentile(wet, [10, 50, 99])
    assert 5.0 < p10 < 15.0 and 15.0 < p50 < 28.0 and 35.0 < p99 < 55.0
    per_event = (dbz < 5.0).mean(axis=(1, 2, 3))
    assert per_event.max() - per_event.min() > 0.2  # events differ in coverage


def test_motion_is_a_consistent_nonzero_shift(default_events):
    lag = 4
    for dbz in default_events[:6]:
        shifts = np.array([best_shift(dbz[t], dbz[t + lag], 24) for t in range(0, 26, 3)])
        median = np.median(shifts, axis=0)
        assert np.linalg.norm(median) >= lag * 0.9  # at least ~1 px/frame
        assert np.abs(shifts - median).max() <= 3


def test_no_flow_means_no_shift():
    dbz = events(STILL, 2)
    for event in dbz:
        assert np.array_equal(best_shift(event[0], event[4], 8), [0, 0])


def test_persistence_error_grows_with_lead_time(default_events):
    dbz = default_events
    mse = [np.mean((dbz[:, lead:] - dbz[:, :-lead]) ** 2) for lead in (1, 2, 4, 8, 12)]
    assert np.all(np.diff(mse) > 0)
    assert mse[-1] > 5 * mse[0]


def test_cells_grow_and_decay_without_motion():
    dbz = events(STILL, 6)
    core_area = (dbz >= 35.0).sum(axis=(2, 3))  # (events, T)
    assert np.all(core_area.max(axis=1) >= 1.3 * core_area.min(axis=1))
    rain_area = (dbz >= 20.0).sum(axis=(2, 3))
    assert np.median(rain_area.max(axis=1) / rain_area.min(axis=1)) > 1.1


def test_missing_frames_are_marked_without_changing_the_others(tmp_path):
    gappy = SyntheticRadarConfig(height=48, width=48, n_frames=8, missing_frame_rate=0.3)
    full = RadarStore(write_synthetic_store(tmp_path / "full.zarr", n_events=4, config=SMALL, seed=2))
    store = RadarStore(write_synthetic_store(tmp_path / "gap.zarr", n_events=4, config=gappy, seed=2))
    assert full.frame_valid.all()
    valid = store.frame_valid
    assert 0 < (~valid).sum() < valid.size
    raw, raw_full = store.read_raw(0, len(store)), full.read_raw(0, len(full))
    assert np.all(raw[~valid] == 255)
    np.testing.assert_array_equal(raw[valid], raw_full[valid])


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="speed_px"):
        SyntheticRadarConfig(speed_px=(4.0, 1.0))
    with pytest.raises(ValueError, match="missing_frame_rate"):
        SyntheticRadarConfig(missing_frame_rate=1.0)
    with pytest.raises(ValueError, match="seed"):
        synthetic_event(SMALL, seed=-1, index=0)
