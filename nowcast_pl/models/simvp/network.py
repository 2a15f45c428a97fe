"""SimVP: spatial encoder -> spatiotemporal translator -> spatial decoder, all convolutional.

Gao et al., "SimVP: Simpler yet Better Video Prediction", CVPR 2022, Sec. 3 and Fig. 2 (IncepU
translator); Tan et al., "SimVP: Towards Simple yet Powerful Spatiotemporal Predictive Learning",
arXiv:2211.12509, 2022 (gSTA translator, "SimVP-v2").

RainDiff and DiffCast use it as their deterministic backbone with the IncepU translator, hid_S=64,
hid_T=256, N_S=2, N_T=6, applied iteratively 5 -> 5 frames four times for 5 -> 20 (raindiff.md §1;
11,063,105 parameters).
"""

import math
from typing import Literal

import torch
from torch import nn

from nowcast_pl.layers.conv import SpatialDecoder, SpatialEncoder, num_downsamplings
from nowcast_pl.layers.gsta import GSTATranslator
from nowcast_pl.models.simvp.inception import IncepUTranslator

Translator = Literal["incepu", "gsta"]
Rollout = Literal["direct", "iterative"]


class SimVP(nn.Module):
    """SimVP video-prediction network for radar nowcasting.

    Each frame is encoded separately to ``hid_S`` channels at ``2**(N_S // 2)``-times lower resolution;
    the latents of all frames are stacked into channels (frame-major) and mapped by the translator; each
    output frame is decoded separately, with the encoder's full-resolution first feature map added as a
    skip before the decoder's last unit.

    Rollouts:
        ``"direct"``: one pass; the translator maps ``in_frames * hid_S`` to ``out_frames * hid_S``
        channels. When ``out_frames == in_frames`` output frame t gets the skip of input frame t (as in
        SimVP); otherwise every output frame gets the skip of the last observed frame.
        ``"iterative"`` (RainDiff/DiffCast): the network maps ``in_frames -> in_frames`` and is applied
        ``ceil(out_frames / in_frames)`` times, each pass taking the previous pass's ``in_frames``
        predictions as input (not a sliding window of observations). The passes are concatenated in time
        and truncated to ``out_frames``; gradients flow through all passes.

    Args:
        in_frames: observed frames T_in.
        out_frames: predicted frames T_out.
        channels: channels per frame C (1 for radar reflectivity).
        hid_S: spatial latent channels (even).
        hid_T: translator width.
        N_S: spatial encoder/decoder units; ``N_S // 2`` of them change the resolution by 2.
        N_T: translator depth (blocks per U-Net side for IncepU, blocks for gSTA; >= 2).
        translator: ``"incepu"`` (SimVP v1) or ``"gsta"`` (SimVP-v2).
        mlp_ratio: gSTA MLP expansion; must stay at its default for ``"incepu"``.
        drop_path: gSTA stochastic depth (see ``GSTATranslator``); must be 0 for ``"incepu"``.
        rollout: ``"direct"`` or ``"iterative"``, see above.

    Raises:
        ValueError: for a non-positive size, an unknown ``translator`` or ``rollout``, or gSTA-only
            options given with ``"incepu"``.
    """

    def __init__(self, *, in_frames: int, out_frames: int, channels: int = 1, hid_S: int = 64,
                 hid_T: int = 256, N_S: int = 2, N_T: int = 6, translator: Translator = "incepu",
                 mlp_ratio: float = 8.0, drop_path: float = 0.0, rollout: Rollout) -> None:
        super().__init__()
        _check_args(in_frames=in_frames, out_frames=out_frames, channels=channels, hid_S=hid_S,
                    hid_T=hid_T, N_S=N_S, N_T=N_T, translator=translator, mlp_ratio=mlp_ratio,
                    drop_path=drop_path, rollout=rollout)
        self.in_frames = in_frames
        self.out_frames = out_frames
        self.channels = channels
        self.rollout = rollout
        self.frames_per_pass = out_frames if rollout == "direct" else in_frames
        self.downsample_factor = 2 ** num_downsamplings(N_S)
        self.encoder = SpatialEncoder(channels, hid_S, N_S)
        width_in, width_out = in_frames * hid_S, self.frames_per_pass * hid_S
        if translator == "incepu":
            self.translator = IncepUTranslator(width_in, hid_T, width_out, N_T)
        else:
            self.translator = GSTATranslator(width_in, hid_T, width_out, N_T, mlp_ratio=mlp_ratio,
                                             drop_path=drop_path)
        self.decoder = SpatialDecoder(hid_S, channels, N_S)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predict the future frames.

        Args:
            x: observations ``(B, T_in, C, H, W)`` float in [0, 1]; H and W divisible by
                ``self.downsample_factor``.

        Returns:
            ``(B, T_out, C, H, W)`` float in data units ([0, 1] nominally; not clamped).

        Raises:
            ValueError: if ``x`` has the wrong rank, frame count, channel count or spatial size.
        """
        self._check_input(x)
        if self.rollout == "direct":
            return self.single_pass(x)
        frames, passes = x, []
        for _ in range(math.ceil(self.out_frames / self.in_frames)):
            frames = self.single_pass(frames)
            passes.append(frames)
        return torch.cat(passes, dim=1)[:, : self.out_frames]

    def single_pass(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder -> translator -> decoder: ``(B, T_in, C, H, W) -> (B, frames_per_pass, C, H, W)``."""
        b, t_in, c, h, w = x.shape
        t_out = self.frames_per_pass
        latent, skip = self.encoder(x.reshape(b * t_in, c, h, w))
        _, hid, lh, lw = latent.shape
        z = self.translator(latent.reshape(b, t_in * hid, lh, lw))
        skip = self._skip_per_output_frame(skip.reshape(b, t_in, hid, h, w), t_out)
        y = self.decoder(z.reshape(b * t_out, hid, lh, lw), skip.reshape(b * t_out, hid, h, w))
        return y.reshape(b, t_out, c, h, w)

    @staticmethod
    def _skip_per_output_frame(skip: torch.Tensor, t_out: int) -> torch.Tensor:
        """Frame-aligned skips when T_out == T_in, else the last frame's skip repeated T_out times."""
        if skip.shape[1] == t_out:
            return skip
        return skip[:, -1:].expand(-1, t_out, -1, -1, -1)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 5:
            raise ValueError(f"x must be (B, T, C, H, W), got shape {tuple(x.shape)}")
        _, t, c, h, w = x.shape
        if t != self.in_frames:
            raise ValueError(f"x has {t} frames, expected in_frames={self.in_frames}")
        if c != self.channels:
            raise ValueError(f"x has {c} channels, expected channels={self.channels}")
        f = self.downsample_factor
        if h % f != 0 or w % f != 0:
            raise ValueError(f"H and W must be divisible by {f} (2**number of downsamplings), got {h}x{w}")


def _check_args(*, in_frames: int, out_frames: int, channels: int, hid_S: int, hid_T: int, N_S: int,
                N_T: int, translator: str, mlp_ratio: float, drop_path: float, rollout: str) -> None:
    """Raise ValueError naming the argument, its value and what is accepted."""
    sizes = dict(in_frames=in_frames, out_frames=out_frames, channels=channels, hid_S=hid_S, hid_T=hid_T,
                 N_S=N_S)
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if N_T < 2:
        raise ValueError(f"N_T must be >= 2, got {N_T}")
    if translator not in ("incepu", "gsta"):
        raise ValueError(f"translator must be 'incepu' or 'gsta', got {translator!r}")
    if rollout not in ("direct", "iterative"):
        raise ValueError(f"rollout must be 'direct' or 'iterative', got {rollout!r}")
    if translator == "incepu" and (mlp_ratio != 8.0 or drop_path != 0.0):
        raise ValueError(
            f"mlp_ratio and drop_path only apply to translator='gsta'; got mlp_ratio={mlp_ratio}, "
            f"drop_path={drop_path} with translator='incepu' (leave them at 8.0 and 0.0)"
        )
