"""Every model configuration shipped under ``configs/`` runs: small ones through ``fit`` (two steps) and
``test``, paper-size ones are instantiated with their data module and read one window. Each is composed with
a tiny store in place of its dataset (same frame counts, one-day-apart events)."""

from pathlib import Path

import pytest
import yaml
from jsonargparse import Namespace

from nowcast_pl.cli import build_cli
from nowcast_pl.config import read_config
from tests.helpers import REPO
from tests.helpers.configs import OVERLAYS, shipped_configs
from tests.helpers.stores import write_moving_store

MODEL_CONFIGS = shipped_configs()
# Explicit stride and event_pattern: split rules merge field by field, so a config's own (e.g. an event-name
# pattern of the real store) would otherwise survive the override.
_ANY = '"stride": 1, "event_pattern": null'
TINY_SPLITS = (f'{{"train": {{"until": "2020-01-04", {_ANY}}}, '
               f'"val": {{"after": "2020-01-04", "until": "2020-01-05", {_ANY}}}, '
               f'"test": {{"after": "2020-01-05", {_ANY}}}, "predict": {{"after": "2020-01-05", {_ANY}}}}}')


def _trains_on_cpu(config: Path) -> bool:
    """Configs meant to run on a CPU: the demo, the baselines and everything under configs/tiny/."""
    parts = config.relative_to(REPO / "configs").parts
    return parts[0] in ("tiny", "baselines") or config.stem.startswith("demo")


def _data_args(config: Path) -> Namespace:
    """``data.init_args`` as ``nowcast fit`` resolves them (``config:`` includes followed)."""
    return read_config([config], build=()).config.data.init_args


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """One tiny store per window length, made on demand."""
    made: dict[int, Path] = {}

    def store(frames: int) -> Path:
        if frames not in made:
            made[frames] = write_moving_store(tmp_path_factory.mktemp("shipped") / f"s{frames}.zarr", n_events=6,
                                              frames=frames + 2, size=16)
        return made[frames]

    return store


def test_every_model_config_is_covered():
    names = {p.relative_to(REPO / "configs").as_posix() for p in MODEL_CONFIGS}
    assert {"demo.yaml", "demo_persistence.yaml"} <= names
    for config in MODEL_CONFIGS:  # an overlay run alone has no model: it must be listed in OVERLAYS
        content = yaml.safe_load(config.read_text())
        assert "class_path" in (content.get("model") or {}) or "config" in content, config


def _tiny_args(config_args: list[str], store: Path, runs: Path) -> list[str]:
    return [*config_args, "--data.init_args.store", str(store), "--data.init_args.splits", TINY_SPLITS,
            "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
            "--data.init_args.eval_batch_size", "2", "--runs_root", str(runs), "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"]


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
def test_shipped_overlay_runs_on_its_base(overlay, stores, tmp_path):
    """The overlay of `make demo`'s student: distils a 2-step fit of its base for 2 stages of 1 step, then tests
    the student with the sampler the overlay sets."""
    base, top = REPO / "configs" / OVERLAYS[overlay], REPO / "configs" / overlay
    data = _data_args(base)
    store = stores(data.in_frames + data.out_frames)
    short = ["--trainer.limit_val_batches", "1", "--trainer.limit_test_batches", "1",
             "--trainer.val_check_interval", "1.0", "--trainer.max_epochs", "1"]
    build_cli(["fit", *_tiny_args(["--config", str(base)], store, tmp_path / "runs"), *short,
               "--run_name", "base", "--trainer.max_steps", "2"])
    teacher = tmp_path / "runs/base/checkpoints/last.ckpt"
    both = _tiny_args(["--config", str(base), "--config", str(top)], store, tmp_path / "runs")
    steps = read_config([base, top], build=()).config.model.init_args
    stages = (steps.distill_teacher_steps // steps.distill_student_steps).bit_length() - 1
    distil = ["--model.init_args.teacher_checkpoint", str(teacher), "--model.init_args.distill_stage_steps", "1",
              "--trainer.max_steps", str(stages), "--run_name", "overlay"]
    cli = build_cli(["fit", *both, *short, *distil])
    assert cli.trainer.global_step == stages
    build_cli(["test", *both, *short, *distil, "--ckpt_path", "last"])
    assert (tmp_path / "runs/overlay/test_metrics.json").exists()


@pytest.mark.parametrize("config", MODEL_CONFIGS, ids=lambda p: p.relative_to(REPO / "configs").as_posix())
def test_shipped_config_runs(config, stores, tmp_path):
    data = _data_args(config)
    frames = data.in_frames + data.out_frames
    args = ["--config", str(config), "--data.init_args.store", str(stores(frames)),
            "--data.init_args.splits", TINY_SPLITS, "--data.init_args.num_workers", "0",
            "--data.init_args.batch_size", "2", "--data.init_args.eval_batch_size", "2",
            "--runs_root", str(tmp_path / "runs"), "--run_name", "shipped", "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.enable_progress_bar", "false"]
    if not _trains_on_cpu(config):
        cli = build_cli(args, run=False)
        cli.datamodule.setup("test")
        window = cli.datamodule.datasets["test"][0]
        assert window["targets"].shape[0] == cli.model.out_frames
        assert sum(p.numel() for p in cli.model.parameters()) > 0
        return
    short = ["--trainer.max_steps", "2", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "1",
             "--trainer.limit_test_batches", "1", "--trainer.val_check_interval", "1.0"]
    cli = build_cli(["fit" if _trainable(config) else "test", *args, *short])
    if _trainable(config):
        assert cli.trainer.global_step == 2
        build_cli(["test", *args, *short, "--ckpt_path", "last"])
    assert (tmp_path / "runs/shipped/test_metrics.json").exists()


def _trainable(config: Path) -> bool:
    """True unless the model is a baseline with nothing to train."""
    model = read_config([config], build=()).config.model.class_path
    module_name, class_name = model.rsplit(".", 1)
    module = __import__(module_name, fromlist=[class_name])
    return getattr(module, class_name).trainable
