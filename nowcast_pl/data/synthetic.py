"""Deterministic, seedable synthetic radar reflectivity, and a radar store built from it.

Each event moves with a steady rigid flow ``v(x) = u + omega J (x - c)``: a uniform advection velocity ``u``
(1–4 px/frame, random direction) plus a slow rotation ``omega`` (0.2–1 deg/frame) about a centre ``c``
inside the grid, so persistence degrades quickly with lead time while the motion can be read off the
input frames. Every field is defined in Lagrangian coordinates and rendered at the back-mapped position of
each pixel, so no resampling error accumulates:

- convective cells: elliptic Gaussians in linear reflectivity Z (so dBZ falls off quadratically from a
  30–55 dBZ core), which grow and decay with an asymmetric Gaussian life cycle of 4–20 frames;
- stratiform patches: the upper tail of a smooth spectral noise field, 15–30 dBZ, slowly strengthening or
  weakening over the event;
- multi-scale texture: a 1/f-like spectral noise field multiplying Z (a few dB), which slowly decorrelates;
- no rain elsewhere: Z adds to a floor of 0.1 mm⁶ m⁻³, so dry pixels are −10 dBZ (raw 0).

Event ``k`` of seed ``s`` depends only on ``(s, k)`` (its generator is ``numpy.random.default_rng([s, k])``),
so events can be generated in any order or in parallel. Event ``k`` is named ``synthetic-{k:04d}`` and starts
at ``2020-01-01 00:00 UTC + k days``: events 0–30 fall in January 2020, 31–59 in February (a leap year),
60–90 in March, 91–120 in April, and so on, so date-range splits select whole events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nowcast_pl.data.schema import FrameEncoding, StoreMetadata
from nowcast_pl.data.store import RadarStoreWriter

FIRST_DAY = np.datetime64("2020-01-01T00:00:00", "s")
FLOOR_Z = 0.1  # mm⁶ m⁻³: 10·log10(0.1) = −10 dBZ, the encoding's minimum
DB = np.log(10) / 10  # Z = exp(DB * dBZ)
SYNTHETIC_ENCODING = FrameEncoding(
    dtype="uint8",
    units="dBZ",
    quantity="reflectivity",
    long_name="synthetic radar reflectivity",
    fill_value=255,
    scale_factor=70 / 255,
    add_offset=-10.0,
    comment="dBZ = 70 * raw / 255 - 10 as in HKO-7; raw 0 = -10 dBZ (no rain), 254 = 59.7 dBZ, 255 = missing",
)
MAX_DBZ = (SYNTHETIC_ENCODING.fill_value - 1) * SYNTHETIC_ENCODING.scale_factor + SYNTHETIC_ENCODING.add_offset
MIN_DBZ = SYNTHETIC_ENCODING.add_offset

Range = tuple[float, float]


@dataclass(frozen=True)
class SyntheticRadarConfig:
    """The distribution events are drawn from; each ``(lo, hi)`` range is sampled uniformly per event/cell.

    Args:
        height: grid rows (px).
        width: grid columns (px).
        n_frames: frames per event.
        time_step_seconds: interval between frames (s).
        cells_per_frame: mean number of cell centres per frame-sized area (cells come and go over the event).
        cell_peak_dbz: peak reflectivity of a cell at maturity (dBZ); low values are drawn more often.
        cell_sigma_px: Gaussian half-width of a cell's major axis at maturity (px), drawn log-uniformly.
        cell_aspect: ratio of major to minor axis.
        cell_drift_px: standard deviation of a cell's own motion relative to the flow (px/frame).
        speed_px: advection speed (px/frame), in a uniformly random direction.
        rotation_deg: rotation rate magnitude (deg/frame), random sign, about a centre inside the grid.
        growth_frames: e-folding half-width of a cell's growth phase (frames).
        decay_frames: e-folding half-width of a cell's decay phase (frames).
        stratiform_cover: fraction of the area covered by stratiform rain.
        stratiform_dbz: reflectivity at the edge of the stratiform patches (dBZ).
        stratiform_trend_db: magnitude of the stratiform change over the event (dB), random sign.
        texture_db: standard deviation of the multiplicative texture (dB).
        texture_frames: frames over which the texture decorrelates completely.
        missing_frame_rate: probability that a frame is marked missing (``frame_valid`` False).
    """

    height: int = 128
    width: int = 128
    n_frames: int = 30
    time_step_seconds: int = 300
    cells_per_frame: Range = (3.0, 10.0)
    cell_peak_dbz: Range = (30.0, 55.0)
    cell_sigma_px: Range = (3.0, 10.0)
    cell_aspect: Range = (1.0, 2.5)
    cell_drift_px: float = 0.15
    speed_px: Range = (1.0, 4.0)
    rotation_deg: Range = (0.2, 1.0)
    growth_frames: Range = (4.0, 12.0)
    decay_frames: Range = (8.0, 20.0)
    stratiform_cover: Range = (0.05, 0.3)
    stratiform_dbz: Range = (15.0, 22.0)
    stratiform_trend_db: float = 6.0
    texture_db: float = 4.0
    texture_frames: float = 20.0
    missing_frame_rate: float = 0.0

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"SyntheticRadarConfig.{name}={value} must be a (low, high) range")
        if min(self.height, self.width, self.n_frames, self.time_step_seconds) < 1:
            raise ValueError("SyntheticRadarConfig: height, width, n_frames and time_step_seconds must be >= 1")
        if not 0.0 <= self.missing_frame_rate < 1.0:
            raise ValueError(f"SyntheticRadarConfig.missing_frame_rate={self.missing_frame_rate} not in [0, 1)")


@dataclass(frozen=True)
class SyntheticEvent:
    """One generated event.

    Args:
        name: ``synthetic-{index:04d}``.
        times: (T,) datetime64[s] frame times, UTC.
        dbz: (T, H, W) float32 reflectivity (dBZ) in [MIN_DBZ, MAX_DBZ], finite everywhere.
        frame_valid: (T,) bool, False for frames to be stored as missing.
    """

    name: str
    times: np.ndarray
    dbz: np.ndarray
    frame_valid: np.ndarray

    def raw(self) -> np.ndarray:
        """(T, H, W) uint8 frames in ``SYNTHETIC_ENCODING`` (missing frames are not yet set to the fill value)."""
        return SYNTHETIC_ENCODING.encode(self.dbz)


def event_name(index: int) -> str:
    """Name of synthetic event ``index``, e.g. ``synthetic-0007``."""
    return f"synthetic-{index:04d}"


@dataclass(frozen=True)
class _Flow:
    """Steady rigid flow ``v(x) = velocity + omega J (x - centre)`` (J: rotation by 90°), (y, x) in px.

    Its trajectories are ``x(t) = centre + R(omega t) (p - centre) + shift(t)`` where ``shift(t) =
    (I - R(omega t)) J velocity / omega``, which tends to ``velocity t`` as ``omega → 0``.
    """

    centre: np.ndarray
    velocity: np.ndarray
    omega: float

    def shift(self, t: float) -> np.ndarray:
        """(2,) displacement of the centre after ``t`` frames (px)."""
        half = 0.5 * self.omega * t
        along = t * np.sinc(2 * half / np.pi)  # sin(omega t) / omega
        across = t * half * np.sinc(half / np.pi) ** 2  # (1 - cos(omega t)) / omega
        return np.array([[along, -across], [across, along]]) @ self.velocity

    def to_eulerian(self, t: float, p: np.ndarray) -> np.ndarray:
        """(..., 2) Lagrangian positions → (..., 2) positions at frame ``t``."""
        return self.centre + self.shift(t) + (p - self.centre) @ _rotation(self.omega * t).T

    def to_lagrangian(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """The affine back-map at frame ``t``: Lagrangian position ``p = matrix @ x + offset``, (2, 2) and (2,)."""
        matrix = _rotation(-self.omega * t)
        return matrix, self.centre - matrix @ (self.centre + self.shift(t))


def _rotation(angle: float) -> np.ndarray:
    """(2, 2) rotation by ``angle`` (rad) acting on (y, x) column vectors."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s], [s, c]])


def _sample_flow(config: SyntheticRadarConfig, rng: np.random.Generator) -> _Flow:
    direction = rng.uniform(0.0, 2 * np.pi)
    speed = rng.uniform(*config.speed_px)
    omega = np.deg2rad(rng.uniform(*config.rotation_deg)) * rng.choice([-1.0, 1.0])
    centre = rng.uniform(0.25, 0.75, size=2) * (config.height, config.width)
    return _Flow(centre, speed * np.array([np.sin(direction), np.cos(direction)]), float(omega))


def _lagrangian_box(config: SyntheticRadarConfig, flow: _Flow) -> tuple[np.ndarray, tuple[int, int]]:
    """Origin (2,) and (rows, cols) of a Lagrangian canvas that covers every pixel of every frame."""
    h, w = config.height, config.width
    corners = np.array([[0, 0], [0, w - 1], [h - 1, 0], [h - 1, w - 1]], dtype=np.float64)
    affines = [flow.to_lagrangian(t) for t in range(config.n_frames)]
    seen = np.concatenate([corners @ matrix.T + offset for matrix, offset in affines])
    origin = np.floor(seen.min(axis=0)) - 2
    shape = np.ceil(seen.max(axis=0) - origin).astype(int) + 3
    return origin, (int(shape[0]), int(shape[1]))


def _spectral_noise(
    rng: np.random.Generator, shape: tuple[int, int], *, slope: float, outer_px: float, inner_px: float
) -> np.ndarray:
    """(rows, cols) float32 Gaussian field, zero mean and unit std, with power ∝ k^-slope between scales.

    ``outer_px`` flattens the spectrum at large scales, ``inner_px`` damps scales below it (px).
    """
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k2 = ky**2 + kx**2
    amplitude = (k2 + outer_px**-2) ** (-slope / 4) * np.exp(-2 * np.pi**2 * k2 * inner_px**2)
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal(shape)) * amplitude, s=shape)
    field -= field.mean()
    return (field / field.std()).astype(np.float32)


@dataclass(frozen=True)
class _Cells:
    """N convective cells in Lagrangian coordinates; arrays of shape (N,) unless noted."""

    centre: np.ndarray  # (N, 2) px at t = 0
    drift: np.ndarray  # (N, 2) px/frame relative to the flow
    sigma: np.ndarray  # (N, 2) major and minor half-widths (px)
    angle: np.ndarray  # orientation of the major axis (rad)
    peak_dbz: np.ndarray
    t_peak: np.ndarray  # frame of maturity
    growth: np.ndarray  # frames
    decay: np.ndarray  # frames

    def amplitude(self, t: float) -> np.ndarray:
        """(N,) life-cycle factor in (0, 1] at frame ``t``: Gaussian rise with ``growth``, fall with ``decay``."""
        width = np.where(t < self.t_peak, self.growth, self.decay)
        return np.exp(-0.5 * ((t - self.t_peak) / width) ** 2)


def _sample_cells(
    config: SyntheticRadarConfig, rng: np.random.Generator, origin: np.ndarray, shape: tuple[int, int]
) -> _Cells:
    margin = 2 * config.cell_sigma_px[1]
    area_ratio = (shape[0] + 2 * margin) * (shape[1] + 2 * margin) / (config.height * config.width)
    n = int(rng.poisson(rng.uniform(*config.cells_per_frame) * area_ratio))
    major = np.exp(rng.uniform(*np.log(config.cell_sigma_px), size=n))
    lo, hi = config.cell_peak_dbz
    lifetime = config.n_frames + config.decay_frames[1]
    return _Cells(
        centre=origin - margin + rng.uniform(size=(n, 2)) * (np.array(shape) + 2 * margin),
        drift=rng.normal(0.0, config.cell_drift_px, size=(n, 2)),
        sigma=np.stack([major, major / rng.uniform(*config.cell_aspect, size=n)], axis=1),
        angle=rng.uniform(0.0, np.pi, size=n),
        peak_dbz=lo + (hi - lo) * rng.uniform(size=n) ** 1.5,
        t_peak=rng.uniform(-config.growth_frames[1], lifetime, size=n),
        growth=rng.uniform(*config.growth_frames, size=n),
        decay=rng.uniform(*config.decay_frames, size=n),
    )


def _render_cells(cells: _Cells, flow: _Flow, t: float, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 linear reflectivity Z (mm⁶ m⁻³) of all cells at frame ``t``.

    Each cell is evaluated only inside the square where it exceeds a tenth of ``FLOOR_Z``.
    """
    z = np.zeros(shape, dtype=np.float32)
    life = cells.amplitude(t)
    peak_db = cells.peak_dbz + 10 * np.log10(np.maximum(life, 1e-30))
    sigma = cells.sigma * (0.6 + 0.4 * life)[:, None]
    radius = sigma[:, 0] * np.sqrt(np.maximum(peak_db - 10 * np.log10(FLOOR_Z) + 10, 0.0) * np.log(10) / 5)
    here = cells.centre + cells.drift * t
    seen = flow.to_eulerian(t, here)
    lower = np.maximum(np.floor(seen - radius[:, None]).astype(int), 0)
    upper = np.minimum(np.ceil(seen + radius[:, None]).astype(int) + 1, shape)
    matrix, offset = flow.to_lagrangian(t)
    for i in np.flatnonzero((radius > 0) & np.all(lower < upper, axis=1)):
        (y0, x0), (y1, x1) = lower[i], upper[i]
        # pixel (y, x) → (major, minor) axis coordinates in units of sigma: one affine map
        to_axes = _rotation(-cells.angle[i]) / sigma[i][:, None]
        linear = (to_axes @ matrix).astype(np.float32)
        shift = (to_axes @ (offset - here[i])).astype(np.float32)
        ys, xs = np.arange(y0, y1, dtype=np.float32), np.arange(x0, x1, dtype=np.float32)
        major = (linear[0, 0] * ys + shift[0])[:, None] + linear[0, 1] * xs
        minor = (linear[1, 0] * ys + shift[1])[:, None] + linear[1, 1] * xs
        z[y0:y1, x0:x1] += np.exp(np.float32(peak_db[i] * DB) - 0.5 * (major**2 + minor**2))
    return z


@dataclass(frozen=True)
class _Canvas:
    """C Lagrangian fields on one grid, sampled bilinearly at back-mapped pixel positions.

    Args:
        fields: (C, rows, cols) float32.
        origin: (2,) Lagrangian position of ``fields[:, 0, 0]`` (px).
    """

    fields: np.ndarray
    origin: np.ndarray

    def sample(self, matrix: np.ndarray, offset: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """(C, H, W) float32 values at Lagrangian positions ``matrix @ pixels + offset``; pixels (2, H, W)."""
        n, rows, cols = self.fields.shape
        pos = np.einsum("ij,jhw->ihw", matrix, pixels) + (offset - self.origin)[:, None, None]
        base = np.floor(pos)
        wy, wx = (pos - base).astype(np.float32)
        iy = np.clip(base[0].astype(np.intp), 0, rows - 2)
        ix = np.clip(base[1].astype(np.intp), 0, cols - 2)
        flat = self.fields.reshape(n, -1)
        k = iy * cols + ix
        corner = [np.take(flat, k + step, axis=1) for step in (0, 1, cols, cols + 1)]
        top = corner[0] + (corner[1] - corner[0]) * wx
        bottom = corner[2] + (corner[3] - corner[2]) * wx
        return top + (bottom - top) * wy


def _stratiform_z(config: SyntheticRadarConfig, rng: np.random.Generator, field: np.ndarray) -> np.ndarray:
    """(rows, cols) float32 stratiform Z (mm⁶ m⁻³) on the canvas, from a smooth unit-std ``field``.

    The upper tail of ``field`` (a random cover fraction) rains at ``stratiform_dbz`` at its edge, 6 dB
    more per standard deviation inside.
    """
    excess = field - np.quantile(field, 1.0 - rng.uniform(*config.stratiform_cover))
    dbz = rng.uniform(*config.stratiform_dbz) + 6.0 * excess
    return (10 ** (dbz / 10) / (1 + np.exp(-excess / 0.08))).astype(np.float32)


def _canvas(config: SyntheticRadarConfig, rng: np.random.Generator, origin: np.ndarray,
            shape: tuple[int, int]) -> _Canvas:
    """Stratiform Z and two independent multi-scale texture fields (unit std), stacked as C = 3."""
    smooth = _spectral_noise(rng, shape, slope=3.0, outer_px=48.0, inner_px=4.0)
    textures = [_spectral_noise(rng, shape, slope=2.0, outer_px=32.0, inner_px=0.7) for _ in range(2)]
    return _Canvas(np.stack([_stratiform_z(config, rng, smooth), *textures]), origin)


def generate_event(config: SyntheticRadarConfig, rng: np.random.Generator) -> np.ndarray:
    """Draw one event.

    Args:
        config: the distribution of events.
        rng: source of randomness; the result depends only on its state.

    Returns:
        (T, H, W) float32 reflectivity (dBZ) in [MIN_DBZ, MAX_DBZ], finite everywhere; ``MIN_DBZ`` (−10)
        where there is no rain.
    """
    flow = _sample_flow(config, rng)
    origin, shape = _lagrangian_box(config, flow)
    canvas = _canvas(config, rng, origin, shape)
    cells = _sample_cells(config, rng, origin, shape)
    trend_db = rng.uniform(-1.0, 1.0) * config.stratiform_trend_db / max(config.n_frames - 1, 1)
    grid = (config.height, config.width)
    pixels = np.mgrid[: grid[0], : grid[1]].astype(np.float64)
    out = np.empty((config.n_frames, *grid), dtype=np.float32)
    for t in range(config.n_frames):
        stratiform, texture_a, texture_b = canvas.sample(*flow.to_lagrangian(t), pixels)
        phase = 0.5 * np.pi * t / config.texture_frames
        texture_db = np.float32(config.texture_db * np.cos(phase)) * texture_a
        texture_db += np.float32(config.texture_db * np.sin(phase)) * texture_b
        stratiform_db = trend_db * (t - 0.5 * (config.n_frames - 1))
        z = _render_cells(cells, flow, t, grid) + np.float32(np.exp(stratiform_db * DB)) * stratiform
        z *= np.exp(np.float32(DB) * texture_db)
        out[t] = np.clip(np.float32(10) * np.log10(z + np.float32(FLOOR_Z)), MIN_DBZ, MAX_DBZ)
    return out


def missing_frames(config: SyntheticRadarConfig, rng: np.random.Generator) -> np.ndarray:
    """(T,) bool ``frame_valid``: each frame is missing with probability ``config.missing_frame_rate``."""
    return rng.uniform(size=config.n_frames) >= config.missing_frame_rate


def synthetic_event(config: SyntheticRadarConfig, *, seed: int, index: int) -> SyntheticEvent:
    """Event ``index`` of ``seed``, identical whatever order or process it is generated in.

    The missing-frame mask uses its own generator, so ``missing_frame_rate`` never changes the dBZ values.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed={seed} and index={index} must be non-negative")
    start = FIRST_DAY + np.timedelta64(index, "D")
    times = start + np.arange(config.n_frames) * np.timedelta64(config.time_step_seconds, "s")
    dbz = generate_event(config, np.random.default_rng([seed, index]))
    valid = missing_frames(config, np.random.default_rng([seed, index, 1]))
    return SyntheticEvent(name=event_name(index), times=times, dbz=dbz, frame_valid=valid)


def synthetic_metadata(config: SyntheticRadarConfig, *, seed: int) -> StoreMetadata:
    """Dataset attributes of a synthetic store; ``extra`` records the generator settings and seed."""
    return StoreMetadata(
        title="nowcast_pl synthetic radar",
        source="nowcast_pl.data.synthetic: advected, rotating, growing and decaying rain cells",
        licence="CC0-1.0 (generated)",
        citation="nowcast_pl synthetic radar generator (nowcast_pl.data.synthetic); no observational data.",
        time_step_seconds=config.time_step_seconds,
        pixel_size_m=1000.0,
        extra={"generator": "nowcast_pl.data.synthetic", "seed": int(seed), "generator_config": asdict(config)},
    )


def write_synthetic_store(
    path: str | Path,
    *,
    n_events: int,
    config: SyntheticRadarConfig = SyntheticRadarConfig(),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write (or finish writing) a store of ``n_events`` synthetic events.

    Args:
        path: store directory (``*.zarr``).
        n_events: number of events, ``synthetic-0000`` … on consecutive days from 2020-01-01.
        config: the distribution of events.
        seed: non-negative seed; the same seed and config give byte-identical stores.
        overwrite: delete an existing store first.

    Returns:
        The store path.

    Raises:
        FileExistsError: if a complete store exists at ``path`` and ``overwrite`` is False.
    """
    if n_events < 0:
        raise ValueError(f"n_events={n_events} must be non-negative")
    with RadarStoreWriter(
        path,
        frame_shape=(config.height, config.width),
        encoding=SYNTHETIC_ENCODING,
        metadata=synthetic_metadata(config, seed=seed),
        overwrite=overwrite,
    ) as writer:
        for index in range(n_events):
            if writer.has_event(event_name(index)):
                continue
            event = synthetic_event(config, seed=seed, index=index)
            writer.append_event(event.name, event.times, event.raw(), frame_valid=event.frame_valid)
    return Path(path)
