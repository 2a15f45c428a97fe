"""STLDM's VAE: latent sizes, parameter count and decoded range."""

import torch

from nowcast_pl.models.stldm.vae import ConvVAE


def test_latents_are_32x32x32_for_128_frames_and_any_multiple_of_4_works():
    vae = ConvVAE(1, 32, 4)
    mean, log_var = vae.encode(torch.rand(2, 1, 128, 128))
    assert mean.shape == log_var.shape == (2, 32, 32, 32)
    assert sum(p.numel() for p in vae.parameters()) == 93_345
    decoded = vae.decode(torch.randn(1, 32, 9, 5))
    assert decoded.shape == (1, 1, 36, 20) and 0 < decoded.min() and decoded.max() < 1
