"""Noise fields defined over a whole domain, read tile by tile, so that every member is one coherent field.

A sampler draws noise several times per forecast (the starting noise; every stochastic step; every RainDiff
segment). Draw ``k`` of member ``n`` is one standard normal field over the whole domain. It is never held in
memory: the domain's noise grid is cut into fixed blocks of ``BLOCK x BLOCK`` noise pixels, and block
(i, j) of draw k is drawn from a generator seeded by ``SeedSequence([seed, member, k, stride, i, j])``. A tile
reads the blocks it overlaps and crops its window, so two tiles that overlap read the same values there, and
a member depends only on (seed, member), never on the tiling, the tile batch or the device.

Noise of a latent model lives on a grid ``stride`` times coarser than the pixels (STLDM: the VAE factor);
the stride is read from the shapes (tile pixels / noise pixels), so tile origins must be multiples of it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

BLOCK = 32
"""Side of the noise blocks, in noise-grid pixels."""


def block_noise(seed: int, member: int, draw: int, stride: int, block: tuple[int, int],
                lead_shape: tuple[int, ...]) -> Tensor:
    """Block (i, j) of draw ``draw`` of ``member``: ``(*lead_shape, BLOCK, BLOCK)`` float32 standard normal."""
    state = np.random.SeedSequence([seed, member, draw, stride, *block]).generate_state(2, np.uint32)
    generator = torch.Generator().manual_seed(((int(state[0]) << 32) | int(state[1])) & (2**63 - 1))
    return torch.randn((*lead_shape, BLOCK, BLOCK), generator=generator)


def domain_noise(seed: int, member: int, draw: int, stride: int, lead_shape: tuple[int, ...],
                 top: int, left: int, height: int, width: int) -> Tensor:
    """The window ``[top, top + height) x [left, left + width)`` (noise-grid pixels) of one domain noise field.

    Returns: ``(*lead_shape, height, width)`` float32.
    """
    rows = range(top // BLOCK, (top + height - 1) // BLOCK + 1)
    cols = range(left // BLOCK, (left + width - 1) // BLOCK + 1)
    band = torch.cat([torch.cat([block_noise(seed, member, draw, stride, (i, j), lead_shape) for j in cols], dim=-1)
                      for i in rows], dim=-2)
    y0, x0 = top - rows.start * BLOCK, left - cols.start * BLOCK
    return band[..., y0:y0 + height, x0:x0 + width].contiguous()


class TileNoise:
    """The :data:`~nowcast_pl.diffusion.noise.RowNoise` source of one (member, tile) row of a tiled forecast.

    Called with a draw's shape ``(..., h_n, w_n)``, it returns the tile's window of the member's next domain
    noise field (its draws are counted in call order, which is the same for every tile of a forecast).

    Args:
        seed: the forecast's seed.
        member: ensemble member index.
        origin: (top, left) of the tile in domain pixels.
        tile: (h, w) tile size in pixels.
    """

    def __init__(self, seed: int, member: int, origin: tuple[int, int], tile: tuple[int, int]) -> None:
        self.seed, self.member, self.origin, self.tile = seed, member, origin, tile
        self.draws = 0

    def __call__(self, shape: tuple[int, ...]) -> Tensor:
        h_n, w_n = shape[-2:]
        stride = self.tile[0] // h_n
        if stride * h_n != self.tile[0] or stride * w_n != self.tile[1]:
            raise ValueError(f"noise of {h_n}x{w_n} pixels is not the {self.tile[0]}x{self.tile[1]} tile at one stride")
        top, left = self.origin
        if top % stride or left % stride:
            raise ValueError(f"tile origin {self.origin} is not on the noise grid of stride {stride}")
        noise = domain_noise(self.seed, self.member, self.draws, stride, tuple(shape[:-2]), top // stride,
                             left // stride, h_n, w_n)
        self.draws += 1
        return noise
