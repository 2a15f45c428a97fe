"""Seeded Gaussian noise for reproducible, batch-independent ensembles.

A sample drawn with one CPU ``torch.Generator`` per batch row depends only on that row's generator, so a
forecast member is the same whatever else is in the batch and on whatever device the model runs. A row may
instead have a :data:`RowNoise` source, a callable that returns the row's noise itself: tiled forecasts
(:mod:`nowcast_pl.forecasting`) give each tile the crop of a noise field defined over the whole domain.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

RowNoise = Callable[[tuple[int, ...]], Tensor]
"""A row's noise source other than a generator: called with the row's shape (without the batch dimension) once
per draw, in the order the sampler draws, it returns standard normal float32 noise of that shape on the CPU."""

Generators = torch.Generator | Sequence[torch.Generator | RowNoise] | None


def member_seed(seed: int, window: int, member: int) -> int:
    """Stable 63-bit seed of ensemble ``member`` for forecast ``window`` under the run ``seed``.

    Uses ``numpy.random.SeedSequence([seed, window, member])``, so nearby integers give unrelated streams.
    """
    for name, value in (("seed", seed), ("window", window), ("member", member)):
        if int(value) != value or value < 0:
            raise ValueError(f"member_seed needs non-negative integers; {name}={value!r}")
    high, low = np.random.SeedSequence([int(seed), int(window), int(member)]).generate_state(2, np.uint32)
    return ((int(high) << 32) | int(low)) & (2**63 - 1)


def member_generators(seed: int, windows: Sequence[int], members: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per batch row i, seeded by ``member_seed(seed, windows[i], members[i])``."""
    if len(windows) != len(members):
        raise ValueError(f"member_generators needs one window per member, got {len(windows)} windows "
                         f"and {len(members)} members")
    pairs = zip(windows, members, strict=True)
    return [torch.Generator().manual_seed(member_seed(seed, int(w), int(m))) for w, m in pairs]


def _draw(shape: Sequence[int], generator: torch.Generator | None, dtype: torch.dtype,
          device: torch.device | str | None) -> Tensor:
    draw_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
    if generator is None:
        return torch.randn(tuple(shape), device=device, dtype=draw_dtype)
    return torch.randn(tuple(shape), generator=generator, device=generator.device, dtype=draw_dtype)


def randn_like_rows(shape: Sequence[int], generator: Generators, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Standard normal noise of ``shape`` = ``(B, ...)``.

    Args:
        generator: ``None`` (torch's global RNG, drawn directly on ``device``), one ``torch.Generator`` (the
            whole tensor drawn on the generator's device), or a sequence of B generators: row i is drawn from
            generator i on that generator's device (CPU for :func:`member_generators`); an element may be a
            :data:`RowNoise` source instead, which returns row i's noise.
        device, dtype: of the returned tensor (half precisions are drawn in float32 and cast).

    Returns: ``shape`` tensor on ``device`` in ``dtype``.
    """
    if generator is None or isinstance(generator, torch.Generator):
        noise = _draw(shape, generator, dtype, device)
    else:
        generators = list(generator)
        if len(generators) != shape[0]:
            raise ValueError(f"got {len(generators)} generators for a batch of {shape[0]} rows; pass one "
                             "torch.Generator per row (or a single generator)")
        noise = torch.stack([_draw_row(shape[1:], g, dtype) for g in generators])
    return noise.to(device=device, dtype=dtype)


def _draw_row(shape: Sequence[int], source: torch.Generator | RowNoise, dtype: torch.dtype) -> Tensor:
    if isinstance(source, torch.Generator):
        return _draw(shape, source, dtype, None)
    noise = source(tuple(shape))
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(f"a row noise source returned shape {tuple(noise.shape)} for a draw of {tuple(shape)}")
    return noise
