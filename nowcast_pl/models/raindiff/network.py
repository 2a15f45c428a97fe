"""RainDiff (arXiv:2510.14962) and DiffCast (Yu et al., CVPR 2024) as one network: a deterministic mean
predictor, a spatio-temporal context encoder and a residual-segment diffusion denoiser.

The forecast is ``y = mu + r`` (RainDiff Sec. 3.1): ``mu`` from SimVP (IncepU, applied iteratively
``T_in -> T_in``), ``r`` generated segment by segment (``S = T_in`` frames each) by the denoiser,
conditioned on the previous segment's residual, the segment index and the context ``h`` that the encoder
extracts from ``cat(observations, mu)`` (eq. 13). A last segment shorter than ``S`` (``T_out`` not a
multiple of ``T_in``) is generated whole and truncated; ``mu`` is predicted for whole segments.

All tensors entering the encoder and the denoiser are in [-1, 1] ("normalised": ``2 x - 1``); residuals of
normalised frames lie in [-2, 2].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from nowcast_pl.layers.checkpointing import checkpointed
from nowcast_pl.models.raindiff.context_encoder import SpatioTemporalEncoder
from nowcast_pl.models.raindiff.tokenwise_attention import Variant, check_variant
from nowcast_pl.models.raindiff.unet import RainDiffUNet
from nowcast_pl.models.simvp.network import SimVP


def normalise(frames: Tensor) -> Tensor:
    """[0, 1] data units -> [-1, 1]."""
    return frames * 2.0 - 1.0


def unnormalise(frames: Tensor) -> Tensor:
    """[-1, 1] -> [0, 1] data units."""
    return (frames + 1.0) * 0.5


class RainDiffNet(nn.Module):
    """Mean predictor + context encoder + denoiser (module docstring).

    Args:
        in_frames: observed frames ``T_in`` (also the segment length ``S``).
        out_frames: forecast frames ``T_out`` (any positive number).
        channels: channels per frame.
        dim: base width of the encoder and the U-Net (64).
        dim_mults: U-Net width multipliers ((1, 2, 4, 8)); frames must be divisible by
            ``2 ** (len(dim_mults) - 1)``.
        tokenwise_attention: Token-wise Attention in the U-Net (RainDiff) or DiffCast's U-Net.
        post_attention: Token-wise Attention on the encoder outputs (RainDiff) or not (DiffCast).
        variant: Token-wise Attention arithmetic, ``"paper"`` (eqs. 9-12) or ``"released"``.
        local_context: condition the first segment on the encoder state after frame ``T_in`` (the
            observations and the first mean frame, as the released code) instead of the global context.
        hid_S, hid_T, N_S, N_T: SimVP sizes (64, 256, 2, 6).
    """

    def __init__(self, *, in_frames: int, out_frames: int, channels: int = 1, dim: int = 64,
                 dim_mults: Sequence[int] = (1, 2, 4, 8), tokenwise_attention: bool = True,
                 post_attention: bool = True, variant: Variant = "paper", local_context: bool = True,
                 hid_S: int = 64, hid_T: int = 256, N_S: int = 2, N_T: int = 6) -> None:
        super().__init__()
        check_variant(variant)
        if in_frames < 1 or out_frames < 1:
            raise ValueError(f"in_frames and out_frames must be >= 1, got {in_frames} and {out_frames}")
        self.in_frames, self.out_frames, self.channels = in_frames, out_frames, channels
        self.num_segments = math.ceil(out_frames / in_frames)
        self.local_context = local_context
        self.mean = SimVP(in_frames=in_frames, out_frames=self.num_segments * in_frames, channels=channels,
                          hid_S=hid_S, hid_T=hid_T, N_S=N_S, N_T=N_T, translator="incepu", rollout="iterative")
        self.context_encoder = SpatioTemporalEncoder(dim, dim_mults, channels=channels,
                                                     post_attention=post_attention, variant=variant)
        self.denoiser = RainDiffUNet(segment_frames=in_frames, dim=dim, dim_mults=dim_mults, channels=channels,
                                     tokenwise_attention=tokenwise_attention, variant=variant)
        self.frame_multiple = math.lcm(self.denoiser.downsampling, self.mean.downsample_factor)
        # Depthwise and 1x1 convolutions run several times faster on CPU in channels-last layout.
        self.context_encoder.to(memory_format=torch.channels_last)
        self.denoiser.to(memory_format=torch.channels_last)

    def check_inputs(self, inputs: Tensor) -> None:
        """One-line ValueError naming the setting when ``inputs (B, T_in, C, H, W)`` cannot be used."""
        if inputs.ndim != 5 or inputs.shape[1] != self.in_frames or inputs.shape[2] != self.channels:
            raise ValueError(f"inputs must be (B, {self.in_frames}, {self.channels}, H, W) (data.in_frames), "
                             f"got {tuple(inputs.shape)}")
        h, w = inputs.shape[-2:]
        if h % self.frame_multiple or w % self.frame_multiple:
            raise ValueError(
                f"frame size {h}x{w} is not divisible by {self.frame_multiple}, the total downsampling of the "
                f"U-Net (dim_mults has {len(self.denoiser.downs)} levels); set data.frame_size to a multiple "
                f"of {self.frame_multiple} (e.g. {max(1, round(h / self.frame_multiple)) * self.frame_multiple})")

    def predict_mean(self, inputs: Tensor, *, checkpoint: bool = False) -> Tensor:
        """``(B, T_in, C, H, W)`` in [0, 1] -> ``mu (B, num_segments * T_in, C, H, W)`` in data units.

        ``checkpoint`` recomputes each SimVP pass in backward instead of keeping its activations (exact).
        """
        self.check_inputs(inputs)
        if not checkpoint:
            return self.mean(inputs)
        frames, passes = inputs, []
        for _ in range(self.num_segments):  # SimVP's iterative rollout, one checkpointed pass at a time
            frames = checkpointed(self.mean, self.mean.single_pass, frames)
            passes.append(frames)
        return torch.cat(passes, dim=1)

    def encode(self, inputs_n: Tensor, mean_n: Tensor, *,
               checkpoint: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """Global and local contexts from normalised observations and the first ``T_out`` mean frames."""
        frames = torch.cat([inputs_n, mean_n[:, : self.out_frames]], dim=1)
        return self.context_encoder(frames, local_frame=self.in_frames, checkpoint=checkpoint)

    def segment_features(self, contexts: tuple[list[Tensor], list[Tensor]]) -> tuple[list, list]:
        """The denoiser's context features for the first segment and for the others.

        The first segment uses the local context when ``local_context`` (released code), the global one
        otherwise; later segments always use the global context, whose features are computed once.
        """
        global_ctx, local_ctx = contexts
        later = self.denoiser.context_features(global_ctx)
        first = self.denoiser.context_features(local_ctx) if self.local_context else later
        return first, later

    def segment_bounds(self, segment: int) -> tuple[int, int]:
        """Forecast frames ``[start, stop)`` of a segment within ``T_out`` (the last may be short)."""
        start = segment * self.in_frames
        return start, min(start + self.in_frames, self.out_frames)

    def denoise(self, x_t: Tensor, t: Tensor, previous_residual: Tensor, features: tuple[list, list], segment: int,
                *, unet: Callable[..., Tensor] | None = None) -> Tensor:
        """U-Net output for segment ``segment`` given the previous segment's residual ``(B, S, C, H, W)`` and
        :meth:`segment_features`: ``(B, S, C, H, W)``.

        ``unet`` replaces the module :attr:`denoiser` for this call (e.g. a ``torch.compile`` of it).
        """
        index = torch.full((x_t.shape[0],), segment, dtype=torch.long, device=x_t.device)
        network = self.denoiser if unet is None else unet
        return network(x_t, t, previous_residual, None, index, features=features[0 if segment == 0 else 1])
