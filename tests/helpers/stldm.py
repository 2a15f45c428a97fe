"""A tiny STLDM (settings and a batch of frames) for tests that need one quickly."""

import torch

TINY = dict(latent_channels=8, translator_width=32, translator_depth=2, unet_base=16, unet_mults=(1, 2),
            patch_size=4, groups=4, heads=2, dim_head=8, thresholds=[0.3], protocol="stldm")


def tiny_batch(batch: int = 2, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return (torch.rand(batch, 3, 1, size, size, generator=generator),
            torch.rand(batch, 4, 1, size, size, generator=generator))
