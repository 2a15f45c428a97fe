"""STLDM networks: VAE {E, D}, Translator Ψ and latent denoiser D_θ (Foo et al., "STLDM: Spatio-Temporal
Latent Diffusion Model for Precipitation Nowcasting", arXiv:2512.21118, Sec. 3, Fig. 2).

Forecasting is split in two: the Translator maps the input latents ``z_x = E(X)`` to a Gaussian over the
future latents whose mean ``ẑ`` is the "first estimate" (decoded: ``Ȳ = D(ẑ)``), and a latent diffusion
model conditioned on ``ẑ`` enhances it; the sample is decoded by the VAE decoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from nowcast_pl.layers.checkpointing import checkpointed
from nowcast_pl.layers.gsta import GSTATranslator
from nowcast_pl.models.stldm.attention import TemporalNorm
from nowcast_pl.models.stldm.unet import STLDMUNet
from nowcast_pl.models.stldm.vae import ConvVAE, reparameterize


@dataclass(frozen=True)
class FirstEstimate:
    """The Translator's output for a batch.

    Attributes:
        frames: decoded first estimate ``Ȳ`` ``(B, T_out, C, H, W)`` in (0, 1).
        mean: Translator mean latent ``ẑ`` ``(B, T_out, C', h, w)``: the diffusion condition.
        log_var: Translator log-variance ``(B, T_out, C', h, w)``.
    """

    frames: Tensor
    mean: Tensor
    log_var: Tensor


class STLDM(nn.Module):
    """VAE + Translator + latent U-Net, with the paper's sizes as defaults.

    Args:
        in_frames, out_frames: T_in and T_out.
        channels: channels per frame (1).
        latent_channels: VAE latent channels ``hid_S`` (32).
        vae_layers: VAE conv units per side ``N_S`` (4: latents are 4x smaller than frames).
        translator_width: gSTA width ``hid_T`` (512).
        translator_depth: gSTA blocks ``N_T`` (8).
        mlp_ratio: gSTA MLP expansion (8).
        drop_path: gSTA stochastic depth of the last block (0; earlier blocks get SimVP-v2's small rates).
        unet_base, unet_mults, patch_size, groups, heads, dim_head: U-Net sizes (64, (1, 2, 4, 8), 16, 8, 4, 32).
        temporal_attention: False for the spatial-only enhancement ablation.
        temporal_norm: ``"time"`` (released code) or ``"channels"``, see
            :func:`~nowcast_pl.models.stldm.attention.temporal_block`.
        checkpoint_vae: in training, recompute the VAE's activations in the backward pass instead of keeping
            them (same values; one more VAE forward pass per step for less memory, see docs/stldm.md). The
            frames are checkpointed in groups (:attr:`vae_chunk_bytes`), so the backward pass recomputes one
            group's activations at a time.
        checkpoint_translator: the same for the Translator (less memory for one more Translator forward pass
            per training step).
    """

    #: With ``checkpoint_vae``, frames are checkpointed in groups whose widest VAE activation stays within this
    #: many bytes (at least one frame per group; frames are independent in the VAE, so values are unchanged).
    #: 8 MiB = 4 frames at 128 x 128 (its effect on peak memory is in docs/stldm.md).
    vae_chunk_bytes = 8 * 2**20

    def __init__(self, *, in_frames: int, out_frames: int, channels: int = 1, latent_channels: int = 32,
                 vae_layers: int = 4, translator_width: int = 512, translator_depth: int = 8,
                 mlp_ratio: float = 8.0, drop_path: float = 0.0, unet_base: int = 64,
                 unet_mults: Sequence[int] = (1, 2, 4, 8), patch_size: int = 16, groups: int = 8, heads: int = 4,
                 dim_head: int = 32, temporal_attention: bool = True, temporal_norm: TemporalNorm = "time",
                 checkpoint_vae: bool = True, checkpoint_translator: bool = False) -> None:
        super().__init__()
        if in_frames < 1 or out_frames < 1:
            raise ValueError(f"STLDM needs in_frames, out_frames >= 1, got {in_frames}, {out_frames}")
        self.in_frames, self.out_frames, self.channels = in_frames, out_frames, channels
        self.checkpoint_vae, self.checkpoint_translator = checkpoint_vae, checkpoint_translator
        self.vae = ConvVAE(channels, latent_channels, vae_layers)
        self.translator = GSTATranslator(in_frames * latent_channels, translator_width,
                                         2 * out_frames * latent_channels, translator_depth,
                                         mlp_ratio=mlp_ratio, drop_path=drop_path)
        self.unet = STLDMUNet(latent_channels, base=unet_base, mults=tuple(unet_mults), patch_size=patch_size,
                              groups=groups, heads=heads, dim_head=dim_head, temporal=temporal_attention,
                              temporal_norm=temporal_norm)
        # The VAE's and Translator's convolutions run faster on CPU in channels-last layout, with the same
        # results (docs/stldm.md); the U-Net
        # picks a layout per level from its inputs (see STLDMUNet).
        self.vae.to(memory_format=torch.channels_last)
        self.translator.to(memory_format=torch.channels_last)

    @property
    def frame_multiple(self) -> int:
        """Frame sides must be multiples of this (VAE factor x U-Net patch size)."""
        return self.vae.downsample_factor * self.unet.patch_size

    def check_frame_count(self, frames: Tensor, expected: int, setting: str) -> None:
        """Raise a one-line ValueError for a wrong rank, frame count, channel count or frame size."""
        if frames.ndim != 5:
            raise ValueError(f"STLDM expects (B, T, C, H, W) frames, got shape {tuple(frames.shape)}")
        _, t, c, h, w = frames.shape
        if t != expected:
            raise ValueError(f"STLDM got {t} frames where {setting}={expected}; set data.{setting} and the "
                             f"model's {setting} to the same value (a checkpoint fixes them)")
        if c != self.channels:
            raise ValueError(f"STLDM got {c} channels per frame, expected {self.channels}")
        m = self.frame_multiple
        if h % m or w % m:
            raise ValueError(f"STLDM cannot take {h}x{w} frames: data.frame_size must be a multiple of {m} "
                             f"(VAE factor {self.vae.downsample_factor} x patch_size {self.unet.patch_size})")

    def encode(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Frames ``(B, T, C, H, W)`` -> latent mean and log-variance, each ``(B, T, C', H/4, W/4)``."""
        b, t = frames.shape[:2]
        mean, log_var = self._vae_call(self.vae.encode, frames.flatten(0, 1))
        return mean.unflatten(0, (b, t)), log_var.unflatten(0, (b, t))

    def decode(self, latents: Tensor) -> Tensor:
        """Latents ``(B, T, C', h, w)`` -> frames ``(B, T, C, 4h, 4w)`` in (0, 1)."""
        return self._vae_call(self.vae.decode, latents.flatten(0, 1)).unflatten(0, latents.shape[:2])

    def _vae_call(self, fn, x: Tensor):
        """``fn(x)`` on frames or latents ``(N, ...)``; with ``checkpoint_vae`` and gradients on, its
        activations are recomputed in backward, one group of rows at a time (see :attr:`vae_chunk_bytes`)."""
        needs_grad = x.requires_grad or any(p.requires_grad for p in self.vae.parameters())
        if not (self.checkpoint_vae and torch.is_grad_enabled() and needs_grad):
            return fn(x)
        frame_bytes = self.vae.latent_channels * x.shape[-2] * x.shape[-1] * x.element_size()
        if fn == self.vae.decode:
            frame_bytes *= self.vae.downsample_factor ** 2
        rows = max(1, self.vae_chunk_bytes // frame_bytes)
        parts = [checkpoint(fn, part, use_reentrant=False) for part in x.split(rows)]
        if isinstance(parts[0], tuple):
            return tuple(torch.cat(outputs) for outputs in zip(*parts, strict=True))
        return torch.cat(parts)

    def translate(self, latents: Tensor) -> tuple[Tensor, Tensor]:
        """Input latents ``(B, T_in, C', h, w)`` -> mean, log-variance ``(B, T_out, C', h, w)`` (time in channels)."""
        b, _, c, h, w = latents.shape
        stacked = latents.reshape(b, -1, h, w)
        if self.checkpoint_translator:  # BatchNorm statistics updated once, as without checkpointing
            out = checkpointed(self.translator, self.translator, stacked)
        else:
            out = self.translator(stacked)
        out = out.reshape(b, 2 * self.out_frames, c, h, w)
        mean, log_var = out.chunk(2, dim=1)
        return mean, log_var

    def first_estimate(self, input_mean: Tensor, input_log_var: Tensor, *, sample: bool,
                       noise_in: Tensor | None = None, noise_out: Tensor | None = None) -> FirstEstimate:
        """Translator pass from the input latents' posterior.

        With ``sample`` the input latents and the decoded output latents are reparameterised draws (training,
        and the released code's evaluation; ``noise_in``/``noise_out`` fix the N(0, I) draws); without it
        both are the means (deterministic first estimate).
        """
        latents = reparameterize(input_mean, input_log_var, noise_in) if sample else input_mean
        mean, log_var = self.translate(latents)
        decoded = reparameterize(mean, log_var, noise_out) if sample else mean
        return FirstEstimate(self.decode(decoded), mean, log_var)

    def denoise(self, z_t: Tensor, t: Tensor, cond: Tensor | None = None, keep: Tensor | None = None) -> Tensor:
        """One U-Net call: ``z_t (B, T_out, C', h, w)``, ``t (B,)`` -> v prediction of the same shape."""
        return self.unet(z_t, t, cond, keep)
