"""Random ensembles for the metric tests, and their layout as pysteps.verification expects it."""

import numpy as np
import torch

MEMBERS, LEADS = 5, 3  # members of an ensemble, lead times


def ensemble_fields(seed: int, batch: int = 2, members: int = MEMBERS, size: int = 20, dtype=torch.float64):
    """(members (B, N, T, H, W), target (B, T, H, W)): smooth-ish fields around 20 with spread ~10, no ties."""
    generator = torch.Generator().manual_seed(seed)
    common = torch.randn((batch, 1, LEADS, size, size), generator=generator, dtype=dtype) * 8
    spread = torch.randn((batch, members, LEADS, size, size), generator=generator, dtype=dtype) * 6
    target = common[:, 0] + torch.randn((batch, LEADS, size, size), generator=generator, dtype=dtype) * 6
    return 20 + common + spread, 20 + target


def pysteps_members(members: torch.Tensor) -> np.ndarray:
    """(B, N, T, H, W) -> (N, B·T·H·W) numpy, pysteps' member-first layout."""
    return members.transpose(0, 1).reshape(members.shape[1], -1).numpy()


def lead_slice(members, target, lead):
    return pysteps_members(members[:, :, lead]), target[:, lead].reshape(-1).numpy()
