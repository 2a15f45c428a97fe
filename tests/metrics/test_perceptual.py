"""LPIPSScore wiring (random trunk only: no network here), weight detection and state_dict exclusion."""

import warnings

import pytest
import torch
from torch import nn
from torchvision import models
from torchvision.models import _api as torchvision_weights_api

from nowcast_pl.metrics import LPIPSScore, backbone_checkpoint_path, build_metrics, flatten_scores


@pytest.fixture
def empty_torch_hub(tmp_path, monkeypatch):
    """A torch hub cache without any checkpoint."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return tmp_path / "hub"


def random_lpips(**kwargs) -> LPIPSScore:
    """LPIPS with a random trunk, seeded so that two instances hold the same network."""
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="meaningless"):
        return LPIPSScore(lead_times=2, value_range=(0.0, 70.0), backbone="random", **kwargs)


def fields(seed: int, shape=(2, 2, 1, 32, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return 70 * torch.rand(shape, generator=generator), 70 * torch.rand(shape, generator=generator)


@pytest.mark.parametrize("resize_to", [None, 64])
def test_random_backbone_wiring(resize_to):
    metric = random_lpips(resize_to=resize_to)
    preds, target = fields(seed=0)
    metric.update(preds[:1], target[:1])
    metric.update(preds[1:], target[1:])
    results = metric.compute()
    assert results.keys() == {"lpips", "lpips/lead_01", "lpips/lead_02"}
    assert all(torch.isfinite(value) and value > 0 for value in results.values())
    assert metric.frame_count.tolist() == [2, 2]
    identical = random_lpips(resize_to=resize_to)
    identical.update(target, target)
    assert identical.compute()["lpips"].item() == pytest.approx(0.0, abs=1e-7)


def test_fully_masked_frames_are_skipped_and_autocast_is_ignored():
    preds, target = fields(seed=1)
    mask = torch.ones(2, 2, 32, 32, dtype=torch.bool)
    mask[0, 1] = False
    plain, autocast = random_lpips(), random_lpips()
    plain.update(preds, target, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast.update(preds, target, mask)
    assert plain.frame_count.tolist() == [2, 1]
    torch.testing.assert_close(autocast.lpips_sum, plain.lpips_sum)


def test_network_is_not_in_state_dict_or_parameters():
    class Task(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(2, 2)
            self.lpips = random_lpips()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.metrics = build_metrics("raindiff", thresholds=(20,), lead_times=2, data_range=70.0)

    task = Task()
    task.lpips.persistent(True)
    assert set(task.state_dict()) == {"head.weight", "head.bias", "lpips.lpips_sum", "lpips.frame_count"}
    assert [name for name, _ in task.named_parameters()] == ["head.weight", "head.bias"]
    task.load_state_dict(task.state_dict(), strict=True)


def test_missing_weights_warn_once_and_report_nothing(empty_torch_hub):
    expected = empty_torch_hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metric = LPIPSScore(lead_times=2, value_range=(0.0, 70.0))
    assert len(caught) == 1 and caught[0].category is UserWarning
    assert str(expected) in str(caught[0].message) and "TORCH_HOME" in str(caught[0].message)
    assert not metric.available
    metric.update(*fields(seed=2))
    assert metric.compute() == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collection = build_metrics("stldm", thresholds=(20,), lead_times=2, data_range=70.0)
    collection.update(*fields(seed=2))
    assert not any(key.startswith("lpips") for key in flatten_scores(collection.compute()))


def test_missing_weights_raise_when_required(empty_torch_hub):
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        LPIPSScore(lead_times=2, value_range=(0.0, 1.0), net="vgg", required=True)
    with pytest.raises(FileNotFoundError, match="alexnet"):
        build_metrics("raindiff", thresholds=(20,), lead_times=2, data_range=70.0, lpips_required=True)


def test_cached_weights_are_found_and_loaded(empty_torch_hub, monkeypatch):
    """With the checkpoint file present, the pretrained trunk is built (torchvision's loader stubbed)."""
    checkpoint = backbone_checkpoint_path("alex")
    assert checkpoint == empty_torch_hub / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert backbone_checkpoint_path("vgg").name == "vgg16-397923af.pth"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.touch()
    trunk = models.alexnet().state_dict()
    monkeypatch.setattr(torchvision_weights_api, "load_state_dict_from_url", lambda url, **_: trunk)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metric = LPIPSScore(lead_times=2, value_range=(0.0, 70.0), required=True)
    assert metric.available
    metric.update(*fields(seed=3))
    assert torch.isfinite(metric.compute()["lpips"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"net": "squeeze"}, "net"), ({"value_range": (1.0, 1.0)}, "value_range"), ({"resize_to": 0}, "resize_to")],
)
def test_invalid_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LPIPSScore(**{"lead_times": 2, "value_range": (0.0, 1.0), "backbone": "random", **kwargs})
