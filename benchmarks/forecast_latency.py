"""Latency of ``nowcast forecast``, from raw radar files to the written forecast file, per stage.

For each model of ``--models``, the script writes ``in_frames`` raw FMI composites (gzipped PGM, one file per
time, as ``nowcast-prep fmi`` reads them; smooth rain cells, ``--size`` x ``--size`` pixels, 1 km spacing) at
the model's time step, makes a checkpoint of the model with random weights from its config (the paper configs
``configs/raindiff_shanghai.yaml``, ``configs/diffcast_shanghai.yaml``, ``configs/stldm_sevir.yaml``, or with
``--tiny`` those of ``configs/tiny/``; ``--leads`` sets the data module's ``out_frames``; the frame recipe
keeps the input resolution, so the model's frame size is the tile size) unless ``--checkpoint`` names one, and
runs :func:`nowcast_pl.forecasting.cli.run`, the code of ``nowcast forecast --source fmi --inputs ...
--members M --output OUT.nc``. Timing needs no trained weights: the cost of a forecast does not depend on them.

Stages, in seconds, timed by wrapping the functions ``run`` calls (no library code is changed):
``load`` (:func:`~nowcast_pl.forecasting.load_forecaster`), ``read`` (reading and checking the raw files,
:func:`~nowcast_pl.forecasting.cli.read_observed`), ``network`` (the model's ``forecast_rows`` / ``forecast``
calls on batches of tiles), ``tiles`` (the rest of :func:`~nowcast_pl.forecasting.forecast`: frame
preparation, cutting, noise crops, blending, restoring to the input grid), ``write`` (the CF dataset and the
NetCDF file) and ``quicklook`` (the GIF). Peak memory is the peak resident set of a fresh process per model.

Sampler: the fastest core sampler setting within 0.02 mean absolute difference ([0, 1] units, 2 % of the
range) of the paper sampler as recorded by the cost harness in ``benchmarks/results/cost_MODEL_sample.json``
(``fast``); where none is recorded, the config's (paper) sampler, and the JSON says so. ``--sampler`` and
``--sampling-steps`` override both. ``--checkpoint`` times a trained checkpoint (a distilled student too) with
the sampler ``nowcast forecast`` gives it by default unless these override it; its leads are the checkpoint's.

Usage: ``python -m benchmarks.forecast_latency [--models raindiff diffcast stldm] [--tiny] [--size 700]
[--leads 12] [--members 8] [--output benchmarks/results/forecast_latency.json]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import REPO, config_sections, output_argument, peak_rss_gb, run_in_subprocess, write_result

MODULE = "benchmarks.forecast_latency"
# name -> (paper config, tiny config, cost-harness result holding its fastest sampler within tolerance)
MODELS = {
    "raindiff": ("configs/raindiff_shanghai.yaml", "configs/tiny/raindiff.yaml", "cost_raindiff_sample.json"),
    "diffcast": ("configs/diffcast_shanghai.yaml", "configs/tiny/diffcast.yaml", "cost_diffcast_sample.json"),
    "stldm": ("configs/stldm_sevir.yaml", "configs/tiny/stldm.yaml", "cost_stldm_sample.json"),
}
FAST_TOLERANCE = 0.02
STAGES = ("load", "read", "tiles", "network", "write", "quicklook")
FIRST_TIME = dt.datetime(2021, 7, 4, 12, 0)


def recorded_sampler(name: str, results: Path = REPO / "benchmarks" / "results") -> dict[str, Any] | None:
    """The fastest sampler setting the cost harness recorded for ``name`` within the tolerance, or None."""
    path = results / MODELS[name][2]
    if not path.is_file():
        return None
    fast = json.loads(path.read_text()).get("fast") or {}
    difference = next((v for k, v in fast.items() if k.startswith("mean_abs_diff")), None)
    if fast.get("sampler") is None or difference is None or difference > FAST_TOLERANCE:
        return None
    return {"sampler": fast["sampler"], "sampling_steps": int(fast.get("sample_steps", fast.get("steps"))),
            "source": f"benchmarks/results/{path.name} (fast; mean abs diff {difference:.4f} to the paper sampler)"}


def sampler_settings(args: argparse.Namespace, name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The sampler this run uses and where it comes from."""
    if args.checkpoint:
        settings = {"sampler": None, "sampling_steps": None,
                    "source": "nowcast forecast's default for the checkpoint (a student's steps, else its class's)"}
    elif (recorded := recorded_sampler(name)) is None:
        settings = {"sampler": config.get("sampler"), "sampling_steps": config.get("sampling_steps"),
                    "source": f"no fastest setting recorded by the cost harness for {name}: the config's sampler"}
    else:
        settings = recorded
    if args.sampler is not None or args.sampling_steps is not None:
        settings = {"sampler": args.sampler or settings["sampler"],
                    "sampling_steps": args.sampling_steps or settings["sampling_steps"],
                    "source": "--sampler / --sampling-steps"}
    return settings


def write_raw_files(folder: Path, size: int, frames: int, step_minutes: float) -> list[Path]:
    """``frames`` FMI composites of ``size`` x ``size`` pixels, ``step_minutes`` apart, oldest first."""
    from tests.helpers.archives.operational import FMI_PATTERN, write_fmi_archive  # noqa: PLC0415

    times = [FIRST_TIME + dt.timedelta(minutes=step_minutes * k) for k in range(frames)]
    write_fmi_archive(folder, times, (size, size))
    return [folder / t.strftime(FMI_PATTERN) for t in times]


def write_checkpoint(config: Path, data: dict[str, Any], leads: int, folder: Path) -> Path:
    """A checkpoint of the model of ``config`` with its initial (random, seeded) weights, ``leads`` output frames
    and a frame recipe that keeps the input's resolution (tiles of the model's frame size); ``data`` is the
    config's resolved ``data.init_args``."""
    import lightning  # noqa: PLC0415
    import torch  # noqa: PLC0415

    from nowcast_pl.cli import build_cli  # noqa: PLC0415
    from nowcast_pl.data.preparation import STATE_KEY  # noqa: PLC0415
    from nowcast_pl.data.synthetic import SyntheticRadarConfig, write_synthetic_store  # noqa: PLC0415

    frames = data["in_frames"] + leads + 1
    size = data["frame_size"]
    store = folder / "store.zarr"  # the data module reads units, time step and grid from a store
    write_synthetic_store(store, n_events=1, config=SyntheticRadarConfig(height=size, width=size, n_frames=frames))
    cli = build_cli(["--config", str(config), "--data.init_args.store", str(store),
                     "--data.init_args.out_frames", str(leads), "--trainer.logger", "false",
                     "--trainer.accelerator", "cpu"], run=False)
    recipe = cli.datamodule.state_dict()
    recipe[STATE_KEY]["pixel_size_m"] = None  # the raw files' grid is forecast at its own resolution
    hparams = dict(cli.model.hparams)  # with LightningCLI's _class_path and _instantiator, as nowcast fit saves
    path = folder / "random.ckpt"
    torch.save({"state_dict": cli.model.state_dict(), "hyper_parameters": hparams, "RadarDataModule": recipe,
                "pytorch-lightning_version": lightning.__version__}, path)
    return path


class StageClock:
    """Seconds spent in each stage; ``wrap`` times a function, counting nested calls of one stage once."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self._open: set[str] = set()

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            if stage in self._open:
                return fn(*args, **kwargs)
            self._open.add(stage)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start
                self.calls[stage] += 1
                self._open.discard(stage)
        return timed


def timed_forecast(checkpoint: Path, files: list[Path], output: Path, members: int, settings: dict[str, Any],
                   tile_batch: int) -> dict[str, Any]:
    """Run ``nowcast forecast`` on ``files`` with stage timers around the functions it calls."""
    import nowcast_pl.forecasting as forecasting  # noqa: PLC0415
    from nowcast_pl.forecasting import cli  # noqa: PLC0415

    clock = StageClock()
    runtime = {"sampler": settings["sampler"], "sampling_steps": settings["sampling_steps"]}
    loaded: dict[str, Any] = {}

    def load(source, **kwargs):
        task = original["load_forecaster"](source, **kwargs, **{k: v for k, v in runtime.items() if v is not None})
        for method in ("forecast", "forecast_rows"):
            setattr(task, method, clock.wrap("network", getattr(task, method)))
        loaded["task"] = task
        return task

    original = {"load_forecaster": forecasting.load_forecaster, "forecast": forecasting.forecast,
                "read_observed": cli.read_observed, "forecast_dataset": cli.forecast_dataset,
                "write_forecast": cli.write_forecast, "write_quicklook": cli.write_quicklook}
    forecasting.load_forecaster = clock.wrap("load", load)
    forecasting.forecast = clock.wrap("tiles", original["forecast"])
    cli.read_observed = clock.wrap("read", original["read_observed"])
    cli.forecast_dataset = clock.wrap("write", original["forecast_dataset"])
    cli.write_forecast = clock.wrap("write", original["write_forecast"])
    cli.write_quicklook = clock.wrap("quicklook", original["write_quicklook"])
    argv = ["--checkpoint", str(checkpoint), "--source", "fmi", "--inputs", *map(str, files),
            "--members", str(members), "--tile-batch", str(tile_batch), "--output", str(output)]
    try:
        start = time.perf_counter()
        cli.run(cli.parse_args(argv))
        total = time.perf_counter() - start
    finally:
        forecasting.load_forecaster, forecasting.forecast = original["load_forecaster"], original["forecast"]
        for name in ("read_observed", "forecast_dataset", "write_forecast", "write_quicklook"):
            setattr(cli, name, original[name])
    seconds = dict(clock.seconds)
    seconds["tiles"] -= seconds["network"]  # forecast() minus the network calls it makes
    task = loaded["task"]
    return {"seconds": seconds, "total_s": total, "network_calls": clock.calls["network"],
            "task": type(task).__name__,
            "sampler_used": {key: getattr(getattr(task, "sampling", None), key, None) for key in runtime},
            "parameters": sum(p.numel() for p in task.parameters()),
            "tile": list(task.frame_preparation.tile), "in_frames": task.in_frames, "leads": task.out_frames,
            "output_mb": output.stat().st_size / 2**20}


def measure_one(args: argparse.Namespace, name: str) -> dict[str, Any]:
    """Latency of one model in this process (peak RSS is this process's)."""
    import torch  # noqa: PLC0415

    config = REPO / MODELS[name][1 if args.tiny else 0]
    model_config, data_config = config_sections(config)
    settings = sampler_settings(args, name, model_config)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        checkpoint = args.checkpoint or write_checkpoint(config, data_config, args.leads, folder)
        from nowcast_pl.forecasting import load_forecaster  # noqa: PLC0415
        from nowcast_pl.forecasting.inputs import ModelInputs  # noqa: PLC0415

        model = ModelInputs.from_hparams(load_forecaster(checkpoint).hparams)
        files = write_raw_files(folder / "raw", args.size, model.in_frames, model.step_minutes)
        rss_before = peak_rss_gb()
        measured = timed_forecast(checkpoint, files, folder / "forecast.nc", args.members, settings, args.tile_batch)
    return {"model": name, "config": "the checkpoint's" if args.checkpoint else str(config.relative_to(REPO)),
            "checkpoint": str(args.checkpoint) if args.checkpoint else "random weights from the config (seeded)",
            "sampler": settings, "threads": torch.get_num_threads(), **measured,
            "peak_rss_gb": peak_rss_gb(), "peak_rss_gb_before_forecast": rss_before}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--tiny", action="store_true", help="the configs/tiny/ models instead of the paper configs")
    parser.add_argument("--checkpoint", type=Path, help="time this checkpoint (one model) instead of random weights")
    parser.add_argument("--size", type=int, default=700, help="raw composite size, pixels per side (default 700)")
    parser.add_argument("--leads", type=int, default=12, help="lead times (the model's out_frames; default 12)")
    parser.add_argument("--members", type=int, default=8, help="ensemble members (default 8)")
    parser.add_argument("--tile-batch", type=int, default=8, help="as nowcast forecast --tile-batch (default 8)")
    parser.add_argument("--sampler", help="override the sampler (default: the fastest recorded within 2 %%)")
    parser.add_argument("--sampling-steps", type=int, help="override the sampling steps")
    parser.add_argument("--note", default="", help="a note stored in the JSON (what ran and why)")
    parser.add_argument("--in-process", action="store_true",
                        help="measure in this process (default: a fresh process per model, for its peak memory)")
    parser.add_argument("--row-only", action="store_true", help=argparse.SUPPRESS)  # one model's row on one line
    output_argument(parser)
    args = parser.parse_args(argv)
    if args.checkpoint is not None and len(args.models) != 1:
        parser.error("--checkpoint times one model: give --models with its name only")
    if min(args.size, args.leads, args.members, args.tile_batch) < 1:
        parser.error("--size, --leads, --members and --tile-batch must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.row_only:
        row = measure_one(args, args.models[0])
        print(json.dumps(row))
        return row
    passed = list(argv) if argv is not None else sys.argv[1:]
    rows = []
    for name in args.models:
        if args.in_process:
            rows.append(measure_one(args, name))
            continue
        single = _without(passed, ("--models", "--output", "--note")) + ["--models", name, "--row-only"]
        rows.append(run_in_subprocess(MODULE, single) | {"model": name})
    from_checkpoint = args.checkpoint is not None
    settings = {"size": [args.size, args.size], "leads": "the checkpoint's" if from_checkpoint else args.leads,
                "members": args.members, "tile_batch": args.tile_batch,
                "configs": "--checkpoint" if from_checkpoint else "tiny" if args.tiny else "paper",
                "inputs": "FMI gzipped PGM composites (nowcast forecast --source fmi)", "output": "NetCDF + GIF"}
    return write_result({"benchmark": "forecast_latency", "settings": settings, "note": args.note, "models": rows},
                        args.output, module=MODULE, argv=argv)


def _without(argv: list[str], options: tuple[str, ...]) -> list[str]:
    """``argv`` less the given options and their values."""
    kept, skipping = [], False
    for item in argv:
        if item.startswith("--"):
            skipping = item in options
        if not skipping:
            kept.append(item)
    return kept


if __name__ == "__main__":
    main()
