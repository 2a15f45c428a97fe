"""Tiny CLI configurations over a tiny store, shared by the CLI tests."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_SIMVP = {"hid_S": 8, "hid_T": 16, "N_S": 2, "N_T": 2, "thresholds": [20.0, 35.0], "lr": 1e-3,
              "panel_every_n_val_steps": 1}


def write_config(path: Path, store: Path, *, model: str = "nowcast_pl.models.simvp.SimVPTask", model_args=None,
                 trainer=None) -> Path:
    """A LightningCLI config over ``store`` (6 events of 12 frames, 16×16, one day apart)."""
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                    "enable_model_summary": False, "log_every_n_steps": 1} | (trainer or {}),
        "model": {"class_path": model, "init_args": dict(TINY_SIMVP if model.endswith("SimVPTask") else
                                                        {"thresholds": [20.0, 35.0]}) | (model_args or {})},
        "data": {"class_path": "nowcast_pl.data.RadarDataModule", "init_args": {
            "store": str(store), "in_frames": 4, "out_frames": 4, "value_range": [-10.0, 60.0],
            "frame_size": 16, "batch_size": 2,
            "splits": {"train": {"until": "2020-01-04"}, "val": {"after": "2020-01-04", "until": "2020-01-05"},
                       "test": {"after": "2020-01-05", "stride": 1}, "predict": {"after": "2020-01-05"}}}},
    }
    path.write_text(yaml.safe_dump(config))
    return path
