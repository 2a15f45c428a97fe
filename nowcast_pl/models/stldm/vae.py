"""Small convolutional VAE working frame by frame: STLDM's latent space (Foo et al., "STLDM:
Spatio-Temporal Latent Diffusion Model for Precipitation Nowcasting", arXiv:2512.21118, Sec. 3.1).

A Gaussian VAE (Kingma & Welling, ICLR 2014) with SimVP-style conv units (conv 3x3 -> GroupNorm(2) ->
LeakyReLU(0.2)) and no skip connections. With ``num_layers = 4`` units of strides [1, 2, 1, 2] a
``(N, 1, 128, 128)`` frame becomes a ``(N, 32, 32, 32)`` latent mean and log-variance; the decoder mirrors
the encoder with transposed convs and ends in a sigmoid, so reconstructions lie in (0, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from nowcast_pl.layers.conv import num_downsamplings, resampling_pattern


def conv_gn_lrelu(in_channels: int, out_channels: int, *, resample: str = "none") -> nn.Sequential:
    """Conv 3x3 (stride 2 for ``"down"``, transposed stride 2 for ``"up"``) -> GroupNorm(2) -> LeakyReLU(0.2).

    Shapes: ``(N, in, H, W) -> (N, out, H', W')`` with ``H' = H/2, H, 2H`` for down/none/up.
    """
    if resample == "up":
        conv: nn.Module = nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1)
    else:
        conv = nn.Conv2d(in_channels, out_channels, 3, stride=2 if resample == "down" else 1, padding=1)
    return nn.Sequential(conv, nn.GroupNorm(2, out_channels), nn.LeakyReLU(0.2, inplace=True))


def reparameterize(mean: Tensor, log_var: Tensor, noise: Tensor | None = None) -> Tensor:
    """``mean + exp(log_var / 2) * noise`` with ``noise ~ N(0, I)`` drawn when not given (same shape)."""
    if noise is None:
        noise = torch.randn_like(mean)
    return mean + torch.exp(0.5 * log_var) * noise


def kl_to_standard_normal(mean: Tensor, log_var: Tensor) -> Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) averaged (not summed) over all elements: a scalar."""
    return 0.5 * (log_var.exp() + mean.square() - 1.0 - log_var).mean()


class ConvVAE(nn.Module):
    """Per-frame Gaussian VAE.

    Args:
        channels: channels per frame (1 for radar).
        latent_channels: latent channels (``hid_S``; 32 in STLDM).
        num_layers: conv units per side (``N_S``; 4 in STLDM), ``num_layers // 2`` of them resample.

    Shapes: :meth:`encode` ``(N, C, H, W) -> mean, log_var (N, latent, H/f, W/f)`` with
    ``f = self.downsample_factor`` (4 in STLDM); :meth:`decode` back to ``(N, C, H, W)`` in (0, 1).
    """

    def __init__(self, channels: int = 1, latent_channels: int = 32, num_layers: int = 4) -> None:
        super().__init__()
        if num_layers < 1 or latent_channels % 2:
            raise ValueError(f"ConvVAE needs num_layers >= 1 and an even latent_channels, got "
                             f"num_layers={num_layers}, latent_channels={latent_channels}")
        pattern = resampling_pattern(num_layers)
        widths = [channels] + [latent_channels] * num_layers
        self.encoder = nn.Sequential(
            *(conv_gn_lrelu(widths[i], latent_channels, resample="down" if down else "none")
              for i, down in enumerate(pattern)),
            nn.Conv2d(latent_channels, 2 * latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(latent_channels, latent_channels, 3, padding=1),
            *(conv_gn_lrelu(latent_channels, latent_channels, resample="up" if up else "none")
              for up in reversed(pattern)),
            nn.Conv2d(latent_channels, channels, 1),
            nn.Sigmoid(),
        )
        self.latent_channels = latent_channels
        self.downsample_factor = 2 ** num_downsamplings(num_layers)

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(N, C, H, W)`` -> latent ``mean, log_var``, each ``(N, latent, H/f, W/f)``."""
        return self.encoder(frames).chunk(2, dim=1)

    def decode(self, latents: Tensor) -> Tensor:
        """``(N, latent, h, w)`` -> frames ``(N, C, h*f, w*f)`` in (0, 1)."""
        return self.decoder(latents)
