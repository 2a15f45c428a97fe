"""RainDiff/DiffCast converter: round trip of the official key names, and missing/unexpected keys named."""

import pytest
import torch

from nowcast_pl.convert.cli import main as convert_main
from nowcast_pl.models.raindiff.convert import convert_state_dict, export_official_names
from nowcast_pl.models.raindiff.network import RainDiffNet
from nowcast_pl.models.raindiff.task import RainDiffTask

TINY = dict(dim=8, dim_mults=(1, 2), hid_S=8, hid_T=16, N_T=2, thresholds=[20.0], protocol="pysteps",
            sampling_steps=3)


@pytest.mark.parametrize("model, tokenwise", [("raindiff", True), ("diffcast", False)])
def test_converter_round_trip_on_random_weights(model, tokenwise):
    net = RainDiffNet(in_frames=3, out_frames=6, dim=8, dim_mults=(1, 2), hid_S=8, hid_T=16, N_T=2,
                      variant="released", tokenwise_attention=tokenwise, post_attention=tokenwise)
    state = {k: torch.randn(v.shape) if v.is_floating_point() else v for k, v in net.state_dict().items()}
    back = convert_state_dict(export_official_names(state, model), net.state_dict(), model)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_converter_names_missing_and_unexpected_keys_of_another_architecture(tmp_path):
    kwargs = dict(in_frames=3, out_frames=6, dim=8, dim_mults=(1, 2), hid_S=8, hid_T=16, N_T=2, variant="released")
    diffcast = RainDiffNet(tokenwise_attention=False, post_attention=False, **kwargs).state_dict()
    raindiff = RainDiffNet(**kwargs).state_dict()
    with pytest.raises(ValueError, match=r"missing \d+ \(.*\); unexpected \d+ \(.*mid_attn\.fn"):
        convert_state_dict(export_official_names(diffcast, "diffcast"), raindiff, "raindiff")
    torch.save({"model": export_official_names(diffcast, "diffcast")}, tmp_path / "official.pt")
    with pytest.raises(SystemExit):
        convert_main(["raindiff", str(tmp_path / "official.pt"), str(tmp_path / "out.ckpt")])
    convert_main(["diffcast", str(tmp_path / "official.pt"), str(tmp_path / "out.ckpt")])
    checkpoint = torch.load(tmp_path / "out.ckpt", weights_only=True)
    task = RainDiffTask(in_frames=3, out_frames=6, tokenwise_attention=False, post_attention=False,
                        **(TINY | dict(dim_mults=[1, 2])))
    task.load_state_dict(checkpoint["state_dict"])
    assert torch.equal(task.net.denoiser.head.weight, diffcast["denoiser.head.weight"])
