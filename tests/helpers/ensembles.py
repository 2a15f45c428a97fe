"""Random ensembles for the metric tests, their layout as pysteps.verification expects it, and per-event
statistics of small ensembles for the bootstrap intervals."""

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


def event_statistics(truths, forecasts, repeat=1):
    """EventStatistics of a 3-member ensemble; event e has windows truths[e], forecasts[e], each added ``repeat``
    times."""
    from nowcast_pl.metrics import EnsembleSettings, EvaluationProtocol, build_metrics
    from nowcast_pl.report.intervals import EventStatistics

    protocol = EvaluationProtocol("small", fss_scales=(1, 4), ensemble=EnsembleSettings(fss_scales=(1,)))
    stats = EventStatistics(build_metrics(protocol, thresholds=[20.0, 35.0], lead_times=2, unit="dBZ",
                                          data_range=70.0, members=3))
    for event, (truth, forecast) in enumerate(zip(truths, forecasts, strict=True)):
        for _ in range(repeat):
            stats.update(event, forecast, truth, None)
    return stats


def fields(n_events, seed, noise=8.0):
    """Per event e: truth (2 windows, 2 leads, 1, 8, 8) dBZ and 3 members; rain and errors grow with e."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    truths = [torch.rand(2, 2, 1, 8, 8, generator=generator) * (20 + 6 * e) for e in range(n_events)]
    forecasts = [t[:, None] + noise * (1 + e / 2) * torch.randn(2, 3, 2, 1, 8, 8, generator=generator)
                 for e, t in enumerate(truths)]
    return truths, forecasts
