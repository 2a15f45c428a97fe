"""Token-wise Attention (TWA) and the SwiftFormer-style stage that hosts it.

RainDiff (Nguyen et al., "RainDiff: End-to-end Precipitation Nowcasting via Token-wise Attention
Diffusion", arXiv:2510.14962, Sec. 3.3, eqs. 9-12) attends over the ``n = h * w`` pixel tokens of a feature
map with two pooled vectors instead of an ``n x n`` matrix, so time and memory are linear in ``n``
(App. C, eqs. 24-26). The stage around it follows SwiftFormer (Shaker et al., ICCV 2023, Fig. 2): a
depthwise-conv feed-forward block, then an encoder of local representation, attention and MLP, each a
residual branch with per-channel layer scale.

Two variants of the attention arithmetic:

``"paper"`` (eqs. 9-12 as written): ``Q, K, V`` are linear projections of the tokens;
    ``alpha = softmax_n(Q w_alpha / sqrt(d))`` and ``q = sum_i alpha_i q_i`` (eq. 9, the softmax-normalised
    weighted sum over the ``1 x n`` axis); ``p_i = q * k_i`` (eq. 10); ``beta = softmax_n(K w_beta / sqrt(d))``
    and ``k = sum_i beta_i p_i`` (eq. 11); ``z' = MLP_Q(Norm(Q)) + MLP_V(V * k)`` (eq. 12) with ``Norm`` the
    per-token L2 normalisation and each MLP one linear layer.
``"released"`` (the authors' released code): ``Q`` and ``K`` are L2-normalised per token; the token weights
    are L2-normalised over the ``n`` axis (no softmax) and ``beta`` is computed from ``p`` rather than ``K``;
    the pooled vectors pass through a softmax over channels; the value is the normalised key (the released
    value projection never reaches the output, so it is not built here); one shared output projection:
    ``z' = W_r (k * K_hat + Q_hat)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Variant = Literal["paper", "released"]
VARIANTS = ("paper", "released")


def check_variant(variant: str) -> None:
    """Raise a one-line ValueError unless ``variant`` is ``"paper"`` or ``"released"``."""
    if variant not in VARIANTS:
        raise ValueError(f"Token-wise Attention variant must be 'paper' or 'released', got {variant!r}")


class TokenwiseAttention(nn.Module):
    """Token-wise Attention over the pixels of a feature map, linear in the number of tokens.

    Args:
        dim: channels ``d`` of the map (= token width; one head).
        variant: ``"paper"`` or ``"released"`` (module docstring).

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``; tokens are the ``H * W`` pixels, no positional encoding.
    """

    def __init__(self, dim: int, variant: Variant = "paper") -> None:
        super().__init__()
        check_variant(variant)
        self.variant = variant
        self.scale = dim ** -0.5
        self.to_query = nn.Linear(dim, dim)
        self.to_key = nn.Linear(dim, dim)
        self.weight_alpha = nn.Parameter(torch.randn(dim))
        self.weight_beta = nn.Parameter(torch.randn(dim))
        if variant == "paper":
            self.to_value = nn.Linear(dim, dim)
            self.query_out = nn.Linear(dim, dim)
            self.value_out = nn.Linear(dim, dim)
        else:
            self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(b, h * w, c)
        attended = self._paper(tokens) if self.variant == "paper" else self._released(tokens)
        return attended.reshape(b, h, w, c).permute(0, 3, 1, 2)

    def _paper(self, z: Tensor) -> Tensor:
        """Eqs. 9-12 on tokens ``(B, n, d)``."""
        query, key, value = self.to_query(z), self.to_key(z), self.to_value(z)
        alpha = torch.softmax(query @ self.weight_alpha * self.scale, dim=1)          # (B, n), eq. 9
        global_query = torch.einsum("bn,bnd->bd", alpha, query)
        beta = torch.softmax(key @ self.weight_beta * self.scale, dim=1)             # (B, n), eq. 11
        # k = sum_i beta_i (q * k_i) = q * sum_i beta_i k_i (eqs. 10-11), without forming p (n x d).
        global_key = global_query * torch.einsum("bn,bnd->bd", beta, key)
        return self.query_out(F.normalize(query, dim=-1)) + self.value_out(value * global_key[:, None])

    def _released(self, z: Tensor) -> Tensor:
        """The released arithmetic on tokens ``(B, n, d)``."""
        query = F.normalize(self.to_query(z), dim=-1)
        key = F.normalize(self.to_key(z), dim=-1)
        alpha = F.normalize(query @ self.weight_alpha * self.scale, dim=1)           # (B, n), L2 over n
        global_query = torch.softmax(torch.einsum("bn,bnd->bd", alpha, query), dim=-1)
        # beta_i = (q * k_i) . w_beta = k_i . (q * w_beta); sum_i beta_i (q * k_i) = q * sum_i beta_i k_i.
        beta = F.normalize(key @ (global_query * self.weight_beta)[..., None] * self.scale, dim=1)[..., 0]
        global_key = torch.softmax(global_query * torch.einsum("bn,bnd->bd", beta, key), dim=-1)
        return self.out(key * global_key[:, None] + query)


class DepthwiseConvFFN(nn.Module):
    """Depthwise 3x3 -> BatchNorm -> 1x1 to ``hidden`` -> GELU -> 1x1 back, residual with layer scale.

    SwiftFormer's ``ConvEncoder`` (``hidden = 4 * dim``) and local representation (``hidden = dim``).
    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, hidden: int, *, layer_scale_init: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(dim, dim, 3, padding=1, groups=dim), nn.BatchNorm2d(dim),
            nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1),
        )
        self.layer_scale = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layer_scale[:, None, None] * self.body(x)


class TokenwiseEncoder(nn.Module):
    """Local representation, then ``x + g1 * TWA(x)``, then ``x + g2 * MLP(x)`` (SwiftFormer encoder).

    ``MLP`` is BatchNorm -> 1x1 to ``mlp_ratio * dim`` -> GELU -> 1x1. ``g1, g2`` start at
    ``layer_scale_init`` per channel. Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, *, variant: Variant = "paper", mlp_ratio: float = 4.0,
                 layer_scale_init: float = 1e-5) -> None:
        super().__init__()
        self.local = DepthwiseConvFFN(dim, dim)
        self.attn = TokenwiseAttention(dim, variant)
        self.mlp = nn.Sequential(nn.BatchNorm2d(dim), nn.Conv2d(dim, int(dim * mlp_ratio), 1), nn.GELU(),
                                 nn.Conv2d(int(dim * mlp_ratio), dim, 1))
        self.layer_scale_attn = nn.Parameter(torch.full((dim,), layer_scale_init))
        self.layer_scale_mlp = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: Tensor) -> Tensor:
        x = self.local(x)
        x = x + self.layer_scale_attn[:, None, None] * self.attn(x)
        return x + self.layer_scale_mlp[:, None, None] * self.mlp(x)


class TokenwiseStage(nn.Module):
    """One SwiftFormer-style stage: :class:`DepthwiseConvFFN` (hidden ``mlp_ratio * dim``) then
    :class:`TokenwiseEncoder`. RainDiff puts one at every U-Net resolution, in the U-Net middle and after each
    level of the context encoder (Post-attention). Not conditioned on the diffusion time.

    Convolutions start from a truncated normal (std 0.02) with zero bias, as SwiftFormer; the attention's
    linear layers keep PyTorch's default init and ``w_alpha, w_beta`` start standard normal.

    Args:
        dim: channels.
        variant: Token-wise Attention arithmetic, ``"paper"`` or ``"released"``.
        mlp_ratio: hidden expansion of the feed-forward blocks.
        layer_scale_init: initial layer scale of the attention and MLP branches.

    Shapes: ``(B, dim, H, W) -> (B, dim, H, W)``.
    """

    def __init__(self, dim: int, *, variant: Variant = "paper", mlp_ratio: float = 4.0,
                 layer_scale_init: float = 1e-5) -> None:
        super().__init__()
        self.conv_ffn = DepthwiseConvFFN(dim, int(dim * mlp_ratio))
        self.encoder = TokenwiseEncoder(dim, variant=variant, mlp_ratio=mlp_ratio,
                                        layer_scale_init=layer_scale_init)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(self.conv_ffn(x))

