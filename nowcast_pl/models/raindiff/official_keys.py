"""Parameter-name translation from the official RainDiff / DiffCast state dicts to :class:`RainDiffNet`.

The official checkpoints (``ckpt-<step>.pt``) hold the state dict of the whole diffusion model: the U-Net
under ``model.``, the context encoder under ``ctx_net.``, SimVP under ``backbone_net.`` and the diffusion
schedule as buffers. Each official key is translated by the first rule whose pattern matches it; the
schedule buffers and the released Token-wise Attention's unused value projection are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DROP = None
Rule = tuple[str, str | None]

SCHEDULE_BUFFERS = ("betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                    "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
                    "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
                    "posterior_mean_coef1", "posterior_mean_coef2", "loss_weight")

RESNET = [(r"mlp\.1\.(.+)", r"emb_proj.1.\1"), (r"block1\.proj\.(.+)", r"unit1.conv.\1"),
          (r"block1\.norm\.(.+)", r"unit1.norm.\1"), (r"block2\.proj\.(.+)", r"unit2.conv.\1"),
          (r"block2\.norm\.(.+)", r"unit2.norm.\1"), (r"res_conv\.(.+)", r"skip.\1")]
CONV_FFN = [(r"layer_scale", "layer_scale"), (r"dwconv\.(.+)", r"body.0.\1"), (r"norm\.(.+)", r"body.1.\1"),
            (r"pwconv1\.(.+)", r"body.2.\1"), (r"pwconv2\.(.+)", r"body.4.\1")]
TOKENWISE_STAGE = (
    [(r"0\." + p, "conv_ffn." + r) for p, r in CONV_FFN]
    + [(r"1\.local_representation\." + p, "encoder.local." + r) for p, r in CONV_FFN]
    + [(r"1\.layer_scale_1", "encoder.layer_scale_attn"), (r"1\.layer_scale_2", "encoder.layer_scale_mlp"),
       (r"1\.attn\.weight_q\.(.+)", r"encoder.attn.to_query.\1"),
       (r"1\.attn\.weight_k\.(.+)", r"encoder.attn.to_key.\1"),
       (r"1\.attn\.weight_v\.(.+)", DROP), (r"1\.attn\.weight_r\.(.+)", r"encoder.attn.out.\1"),
       (r"1\.attn\.weight_alpha", "encoder.attn.weight_alpha"), (r"1\.attn\.weight_beta", "encoder.attn.weight_beta"),
       (r"1\.linear\.norm1\.(.+)", r"encoder.mlp.0.\1"), (r"1\.linear\.fc1\.(.+)", r"encoder.mlp.1.\1"),
       (r"1\.linear\.fc2\.(.+)", r"encoder.mlp.3.\1")]
)
TAU = [(r"fn\.norm\.g", "norm.gain"), (r"fn\.fn\.proj_1\.(.+)", r"tau.proj_in.\1"),
       (r"fn\.fn\.proj_2\.(.+)", r"tau.proj_out.\1"),
       (r"fn\.fn\.spatial_gating_unit\.conv0\.(.+)", r"tau.attention.local.\1"),
       (r"fn\.fn\.spatial_gating_unit\.conv_spatial\.(.+)", r"tau.attention.dilated.\1"),
       (r"fn\.fn\.spatial_gating_unit\.conv1\.(.+)", r"tau.attention.mix.\1"),
       (r"fn\.fn\.spatial_gating_unit\.fc\.(0|2)\.(.+)", r"tau.attention.excite.\1.\2")]
SELF_ATTENTION = [(r"fn\.norm\.g", "norm.gain"), (r"fn\.fn\.(to_qkv|to_out)\.(.+)", r"attn.\1.\2")]
SIMVP = [(r"enc\.enc\.(\d+)\.conv\.conv\.(.+)", r"encoder.units.\1.body.0.\2"),
         (r"enc\.enc\.(\d+)\.conv\.norm\.(.+)", r"encoder.units.\1.body.1.\2"),
         (r"dec\.dec\.(\d+)\.conv\.conv\.0\.(.+)", r"decoder.units.\1.body.0.\2"),
         (r"dec\.dec\.(\d+)\.conv\.conv\.(weight|bias)", r"decoder.units.\1.body.0.\2"),
         (r"dec\.dec\.(\d+)\.conv\.norm\.(.+)", r"decoder.units.\1.body.{norm}.\2"),
         (r"dec\.readout\.(.+)", r"decoder.readout.\1"),
         (r"hid\.(enc|dec)\.(\d+)\.conv1\.(.+)", r"translator.\1oder.\2.reduce.\3"),
         (r"hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.conv\.(.+)", r"translator.\1oder.\2.branches.\3.0.\4"),
         (r"hid\.(enc|dec)\.(\d+)\.layers\.(\d+)\.norm\.(.+)", r"translator.\1oder.\2.branches.\3.1.\4")]


def _scoped(src: str, dst: str, rules: Iterable[Rule]) -> list[Rule]:
    """Prefix rules: ``src`` is a regex prefix with no groups, ``dst`` a literal prefix."""
    return [(src + pattern, DROP if target is DROP else dst + target) for pattern, target in rules]


def _unet_level(side: str, level: int, tokenwise: bool, last: bool) -> list[Rule]:
    src, dst = rf"model\.{side}\.{level}\.", f"denoiser.{side}.{level}."
    resample_index = 4 if tokenwise else 3
    resample = ([(rf"{resample_index}\.(weight|bias)", r"resample.\1")] if last
                else [(rf"{resample_index}\.1\.(.+)", r"resample.proj.\1")])
    rules = (_scoped("0\\.", "block1.", RESNET) + _scoped("1\\.", "block2.", RESNET)
             + _scoped("2\\.", "temporal_attention.", TAU) + resample)
    if tokenwise:
        rules += _scoped("3\\.", "tokenwise.", TOKENWISE_STAGE)
    return _scoped(src, dst, rules)


def official_rules(model: str, levels: int = 4) -> list[Rule]:
    """Translation rules for ``model`` in ``{"raindiff", "diffcast"}`` with ``levels`` U-Net levels."""
    if model not in ("raindiff", "diffcast"):
        raise ValueError(f"model must be 'raindiff' or 'diffcast', got {model!r}")
    tokenwise = model == "raindiff"
    rules: list[Rule] = [(re.escape(name), DROP) for name in SCHEDULE_BUFFERS]
    rules += [(r"model\.init_conv\.(.+)", r"denoiser.stem.\1"),
              (r"model\.time_mlp\.(1|3)\.(.+)", r"denoiser.time_mlp.net.\1.\2"),
              (r"model\.frag_idx_mlp\.(1|3)\.(.+)", r"denoiser.segment_mlp.net.\1.\2"),
              (r"model\.final_conv\.(.+)", r"denoiser.head.\1")]
    for side in ("downs", "ups"):
        for level in range(levels):
            rules += _unet_level(side, level, tokenwise, last=level == levels - 1)
    for name in ("mid_block1", "mid_block2"):
        rules += _scoped(rf"model\.{name}\.", f"denoiser.{name}.", RESNET)
    rules += _scoped(r"model\.final_res_block\.", "denoiser.final_block.", RESNET)
    rules += _scoped(r"model\.mid_attn\.", "denoiser.mid_attention.",
                     TOKENWISE_STAGE if tokenwise else SELF_ATTENTION)
    rules += [(r"ctx_net\.init_conv\.(.+)", r"context_encoder.stem.\1")]
    for level in range(levels):
        src, dst = rf"ctx_net\.downs\.{level}\.", f"context_encoder.levels.{level}."
        rules += _scoped(src + "0\\.", dst + "resnet.", RESNET)
        rules += [(src + r"1\.conv_gates\.0\.(.+)", dst + r"gru.gates.\1"),
                  (src + r"1\.conv_cans\.0\.(.+)", dst + r"gru.candidate.\1"),
                  (src + r"2\.1\.(.+)", dst + r"downsample.proj.\1")]
        if tokenwise:
            rules += _scoped(rf"ctx_net\.atts\.{level}\.", f"context_encoder.post_attention.{level}.",
                             TOKENWISE_STAGE)
    rules += _scoped(r"backbone_net\.", "mean.", SIMVP)
    return rules


def translate_key(key: str, rules: list[Rule], up_units: set[str]) -> tuple[bool, str | None]:
    """(matched, our key or None for a dropped key). ``up_units``: official SimVP decoder units that upsample."""
    for pattern, target in rules:
        match = re.fullmatch(pattern, key)
        if match is None:
            continue
        if target is DROP:
            return True, None
        ours = match.expand(target)
        if "{norm}" in ours:
            unit = re.search(r"dec\.dec\.(\d+)\.", key).group(1)
            ours = ours.replace("{norm}", "2" if unit in up_units else "1")
        return True, ours
    return False, None


_GROUP = re.compile(r"\((?!\?)[^()]*\)")


def _invert(pattern: str, template: str) -> tuple[str, str]:
    """(pattern, template) of the reverse translation of one rule (``{norm}`` matches body index 1 or 2)."""
    groups = _GROUP.findall(pattern)
    order: list[int] = []
    regex = ""
    for piece in re.split(r"(\\\d|\{norm\})", template):
        if piece == "{norm}":
            regex += "[12]"
        elif re.fullmatch(r"\\\d", piece):
            order.append(int(piece[1]))
            regex += groups[order[-1] - 1]
        else:
            regex += re.escape(piece)
    counter = iter(range(1, len(groups) + 1))
    source = _GROUP.sub(lambda m: "\\" + str(order.index(next(counter)) + 1), pattern)
    return regex, source.replace("\\.", ".")


def to_official_key(key: str, rules: list[Rule], up_units: set[str]) -> str | None:
    """The official name of our ``key`` (inverse of :func:`translate_key`), or None if no rule produces it.

    ``up_units``: our SimVP decoder units that upsample (their convolution sits in a Sequential officially).
    """
    for pattern, target in rules:
        if target is DROP:
            continue
        regex, source = _invert(pattern, target)
        match = re.fullmatch(regex, key)
        if match is None:
            continue
        official = match.expand(source)
        unit = re.match(r"mean\.decoder\.units\.(\d+)\.body\.0\.", key)
        if "conv.conv" in official and unit is not None and (unit.group(1) in up_units) != ("conv.conv.0." in official):
            continue
        return official
    return None
