"""STLDM converter: round trip of the released key names, errors for another configuration, released file formats."""

import pytest
import torch

from nowcast_pl.models.stldm.convert import convert_state_dict, export_official, load_official, official_config
from nowcast_pl.models.stldm.network import STLDM

TINY = dict(latent_channels=8, translator_width=32, translator_depth=2, unet_base=16, unet_mults=(1, 2),
            patch_size=4, groups=4, heads=2, dim_head=8, thresholds=[0.3], protocol="stldm")


def test_converter_round_trip_and_errors_for_another_configuration():
    torch.manual_seed(0)
    model = STLDM(in_frames=3, out_frames=4, **{k: v for k, v in TINY.items() if k not in ("thresholds", "protocol")})
    ours = model.state_dict()
    official = export_official(ours)
    assert "diff_unet.conditions.1.weight" in official and "backbone.vae.decoder.readout.weight" in official
    assert official["diff_unet.downs.0.attn_temporal.fn.norm.g"].shape == (1, 8, 1, 1)
    assert official_config(official) | {} == dict(in_frames=3, out_frames=4, latent_channels=8, translator_depth=2,
                                                  translator_width=32)
    back = convert_state_dict(official, ours)
    assert back.keys() == ours.keys() and all(torch.equal(back[k], v) for k, v in ours.items())
    other = STLDM(in_frames=5, out_frames=4, **{k: v for k, v in TINY.items() if k not in ("thresholds", "protocol")})
    with pytest.raises(ValueError, match=r"translator.stages.0.0.layer_scale1 has shape \(24,\), ours \(40,\)"):
        convert_state_dict(official, other.state_dict())
    del official["diff_unet.mid.block1.mlp.1.weight"]
    official["diff_unet.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected key in the official STLDM state dict: 'diff_unet.extra"):
        convert_state_dict(official, ours)


def test_converter_reads_the_released_file_formats(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = STLDM(in_frames=3, out_frames=4, **{k: v for k, v in TINY.items() if k not in ("thresholds", "protocol")})
    ours = model.state_dict()
    official = export_official(ours)
    save_file({k: v.contiguous() for k, v in official.items()}, str(tmp_path / "model.safetensors"))  # Hugging Face
    torch.save({"model": {f"module.{k}": v for k, v in official.items()}}, tmp_path / "stldm_final.pt")  # DDP run
    for name in ("model.safetensors", "stldm_final.pt"):
        back = convert_state_dict(load_official(tmp_path / name), ours)
        assert back.keys() == ours.keys() and all(torch.equal(back[k], v) for k, v in ours.items())
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="list.pt holds a list, not an STLDM state dict"):
        load_official(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_official(tmp_path / "missing.pt")
