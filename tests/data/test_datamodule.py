import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nowcast_pl.data import RadarDataModule, RadarStore, Split
from nowcast_pl.data.transforms import resize_mask
from tests.helpers.stores import ENCODING, write_moving_store


def _module(store, **kwargs):
    args = dict(in_frames=3, out_frames=2, value_range=(-10.0, 60.0), splits={"train": Split(), "test": Split()},
                batch_size=2) | kwargs
    return RadarDataModule(str(store), **args)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_moving_store(tmp_path_factory.mktemp("dm") / "s.zarr", n_events=3, frames=8, size=16,
                              missing={1: [2]})


def test_items_hold_scaled_frames_masks_and_init_time(store):
    dm = _module(store)
    dm.setup("test")
    dataset = dm.datasets["test"]
    raw_store = RadarStore(store)
    item = dataset[0]
    assert item["inputs"].shape == (3, 1, 16, 16) and item["targets"].shape == (2, 1, 16, 16)
    raw = raw_store.read_raw(0, 5)
    physical = raw * (70 / 255) - 10.0
    expected = np.where(raw == 255, 0.0, np.clip((physical + 10.0) / 70.0, 0, 1))
    np.testing.assert_allclose(torch.cat([item["inputs"], item["targets"]])[:, 0].numpy(), expected, atol=1e-6)
    np.testing.assert_array_equal(torch.cat([item["input_mask"], item["target_mask"]])[:, 0].numpy(), raw != 255)
    assert item["init_time"].item() == raw_store.times[2].astype(np.int64)


def test_missing_frames_drop_windows_unless_allowed(store):
    strict, lenient = _module(store), _module(store, max_missing_frames=1)
    strict.setup("test")
    lenient.setup("test")
    # Event 1 (frames 8..15) has frame 10 missing: 4 windows per 8-frame event, 3 of event 1 touch frame 10.
    assert len(strict.datasets["test"]) == 4 + 1 + 4
    assert len(lenient.datasets["test"]) == 12
    item = lenient.datasets["test"][4]  # window starting at frame 8: frame 10 is its third input
    assert not item["input_mask"][2].any() and (item["inputs"][2] == 0).all()


def test_resize_bilinear_without_antialias_matches_interpolate(store):
    dm = _module(store, frame_size=8)
    dm.setup("test")
    full = _module(store)
    full.setup("test")
    small, big = dm.datasets["test"][0]["inputs"], full.datasets["test"][0]["inputs"]
    np.testing.assert_allclose(small, F.interpolate(big, size=(8, 8), mode="bilinear", align_corners=False),
                               atol=1e-6)
    maxed = _module(store, frame_size=8, resize_method="max")
    maxed.setup("test")
    np.testing.assert_allclose(maxed.datasets["test"][0]["inputs"], F.max_pool2d(big, 2), atol=1e-6)


def test_resized_mask_is_false_wherever_a_missing_pixel_contributes():
    mask = torch.ones(1, 1, 8, 8, dtype=torch.bool)
    mask[0, 0, 3, 5] = False
    small = resize_mask(mask, (4, 4), method="bilinear")
    assert small.sum() == 15 and not small[0, 0, 1, 2]


def test_window_longer_than_any_event_is_a_clear_error(store):
    dm = _module(store, in_frames=5, out_frames=5)
    with pytest.raises(ValueError, match="no window of 10 frames.*Longest contiguous run of frames in the store: 8"):
        dm.setup("test")


def test_missing_split_and_bad_arguments_are_clear_errors(store):
    with pytest.raises(ValueError, match="data.splits has no 'predict' entry"):
        _module(store).setup("predict")
    with pytest.raises(ValueError, match="unknown split names \\['training'\\]"):
        _module(store, splits={"training": Split()})
    with pytest.raises(ValueError, match="resize_method"):
        _module(store, resize_method="lanczos")
    with pytest.raises(ValueError, match="value_range"):
        _module(store, value_range=(60.0, -10.0))


def test_training_order_depends_only_on_seed_and_epoch(store):
    dm = _module(store, splits={"train": Split()})
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    first = [b["window"].tolist() for b in loader]
    again = _module(store, splits={"train": Split()})
    again.setup("fit")
    loader = again.train_dataloader()
    loader.sampler.set_epoch(3)
    assert [b["window"].tolist() for b in loader] == first
    loader.sampler.set_epoch(4)
    assert [b["window"].tolist() for b in loader] != first


def test_store_units_and_time_step_are_exposed(store):
    dm = _module(store)
    assert dm.units == ENCODING.units and dm.time_step_minutes == 5.0


def test_pad_places_the_grid_like_center_crop_and_masks_the_border(store):
    import torchvision.transforms.functional as TF

    padded, plain = _module(store, frame_size=21, resize_method="pad"), _module(store)
    padded.setup("test")
    plain.setup("test")
    item, reference = padded.datasets["test"][0], plain.datasets["test"][0]
    torch.testing.assert_close(item["inputs"], TF.center_crop(reference["inputs"], [21, 21]))
    assert item["input_mask"].sum() == reference["input_mask"].sum()
    assert not item["input_mask"][..., 0, :].any() and not item["input_mask"][..., :, -3:].any()


def test_init_times_and_physical_conversion_are_offered_by_the_data_module(store):
    dm = _module(store)
    dm.setup("test")
    dataset = dm.datasets["test"]
    times = dm.init_times("test")
    assert times.dtype == np.int64 and times.shape == (len(dataset),)
    assert [dataset[i]["init_time"].item() for i in (0, len(dataset) - 1)] == [times[0], times[-1]]
    np.testing.assert_allclose(dm.to_physical(np.array([0.0, 0.5, 1.0])), [-10.0, 25.0, 60.0])
    assert torch.equal(dm.to_physical(torch.tensor([0.25])), torch.tensor([7.5]))


def test_random_crops_are_windows_of_the_frames_drawn_per_epoch_and_fixed_in_evaluation(store):
    cropped, whole = _module(store, crop_size=8), _module(store)
    cropped.setup("fit")
    whole.setup("fit")
    dataset, full = cropped.datasets["train"], whole.datasets["train"]
    origins = {dataset.crop_origin(3, epoch) for epoch in range(6)}
    assert len(origins) > 1 and all(0 <= o <= 8 for origin in origins for o in origin)
    item, reference = dataset[(2, 3)], full[3]
    top, left = dataset.crop_origin(3, 2)
    for key in ("inputs", "targets", "input_mask", "target_mask"):
        torch.testing.assert_close(item[key], reference[key][..., top:top + 8, left:left + 8])
    torch.testing.assert_close(dataset[(2, 3)]["inputs"], item["inputs"])
    torch.testing.assert_close(dataset[3]["inputs"], dataset[3]["inputs"])  # evaluation: one fixed crop
    batch = next(iter(cropped.train_dataloader()))
    assert batch["inputs"].shape == (2, 3, 1, 8, 8)


def test_crop_errors_name_the_setting(store):
    with pytest.raises(ValueError, match=r"data.crop_size \[20, 20\] does not fit in the 16x16 frames"):
        _module(store, crop_size=20).setup("test")
    predicting = _module(store, crop_size=8, splits={"predict": Split()})
    with pytest.raises(ValueError, match="data.crop_size: nowcast predict writes whole frames"):
        predicting.setup("predict")


def test_checkpoint_state_records_the_frame_recipe(store):
    dm = _module(store, frame_size=8, resize_method="area", crop_size=4)
    recipe = dm.state_dict()["frame_preparation"]
    assert recipe == {"value_range": [-10.0, 60.0], "units": "dBZ", "time_step_minutes": 5.0, "tile": [4, 4],
                      "factor": [2.0, 2.0], "resize_method": "area", "antialias": False, "pixel_size_m": 1000.0}
    assert _module(store, frame_size=21, resize_method="pad").frame_preparation().factor == (1.0, 1.0)


def test_epoch_keyed_sampler_resumes_with_the_same_keys(store):
    from nowcast_pl.data.resumable import ResumableSampler

    dm = _module(store, crop_size=8)
    dm.setup("fit")
    dataset = dm.datasets["train"]
    through = ResumableSampler(dataset, num_replicas=1, rank=0, seed=0, keyed_by_epoch=True)
    through.set_epoch(3)
    keys = list(through)
    resumed = ResumableSampler(dataset, num_replicas=1, rank=0, seed=0, keyed_by_epoch=True)
    resumed.resume(3, 4)
    assert list(resumed) == keys[4:] and {epoch for epoch, _ in keys} == {3}


def test_the_recipe_prepares_new_frames_as_the_data_module_prepared_training_frames(store):
    dm = _module(store, frame_size=8, resize_method="area")
    dm.setup("test")
    raw = RadarStore(store)
    physical = raw.encoding.decode(raw.read_raw(0, 3))
    prepared = dm.frame_preparation().prepare(physical)
    np.testing.assert_allclose(prepared, dm.datasets["test"][0]["inputs"][:, 0].numpy(), atol=1e-6)
