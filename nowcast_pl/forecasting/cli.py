"""``nowcast forecast``: an ensemble forecast from the newest raw radar files (or a store) into a CF file and a GIF.

    nowcast forecast --checkpoint runs/fmi/checkpoints/last.ckpt --source fmi \\
        --inputs radar/fmi/pgm/20160928/*.pgm.gz --members 8 --output forecast.nc

``--source`` and its options (``--to-dbz``, ``--zr-a``, ``--fn-pattern``, ``--qty`` ...) are those of
``nowcast-prep <source>``, parsed by the same code, and the files are read by the same converter
(:mod:`nowcast_pl.forecasting.raw_inputs`); ``nowcast forecast --source fmi --help`` lists them. Instead of
raw files, ``--store STORE`` forecasts from a radar store. The model's ``in_frames`` frames ending at
``--time`` (default: the newest) are checked against the model and forecast by
:func:`nowcast_pl.forecasting.forecast` (tiles of the model's grid over the input's grid). ``--output`` is a
``.nc`` (NetCDF) or ``.zarr`` path (:mod:`nowcast_pl.forecasting.forecast_file`); the quick-look GIF goes
beside it (``--gif`` to choose). Nothing is overwritten without ``--overwrite``. Inputs the model cannot take
end the command with one line naming the file and the fix, and exit status 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from data_prep.errors import UsageError
from data_prep.registry import converters, get_converter
from nowcast_pl.data.schema import StoreValidationError
from nowcast_pl.forecasting.forecast_file import check_writable, forecast_dataset, output_format, write_forecast
from nowcast_pl.forecasting.inputs import ModelInputs, ObservedFrames
from nowcast_pl.forecasting.quicklook import write_quicklook
from nowcast_pl.forecasting.raw_inputs import read_raw_inputs
from nowcast_pl.forecasting.store_inputs import read_store_inputs

PROG = "nowcast forecast"
USER_ERRORS = (UsageError, ValueError, FileExistsError, FileNotFoundError, StoreValidationError)
COMMON = ("checkpoint", "inputs", "source", "store", "time", "members", "seed", "output", "gif", "overwrite",
          "to_rain", "device", "tile_batch", "sampler", "sampling_steps", "guidance_scale")


def _time(text: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time; write e.g. 2016-09-28T15:10 (UTC)") from None


def build_parser(source: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``source``, that source's ``nowcast-prep`` options too."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a .ckpt of nowcast fit, or its run folder")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--inputs", nargs="+", type=Path, metavar="FILE",
                       help="raw radar files, or one archive folder (as nowcast-prep --src); needs --source")
    where.add_argument("--store", type=Path, help="radar store (nowcast-prep output) to forecast from")
    parser.add_argument("--source", choices=list(converters()), metavar="NAME",
                        help=f"format of --inputs, as for nowcast-prep: one of {', '.join(converters())}")
    parser.add_argument("--time", type=_time, help="UTC time of the last observed frame (default: the newest)")
    parser.add_argument("--members", type=int, default=1, help="ensemble members (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="member n depends only on (seed, n) (default 0)")
    parser.add_argument("--output", required=True, type=Path, help="forecast file: OUT.nc (NetCDF) or OUT.zarr")
    parser.add_argument("--gif", type=Path, help="quick-look GIF (default: OUT with the suffix .gif)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output and --gif")
    parser.add_argument("--to-rain", action="store_true",
                        help="convert reflectivity to the model's rain unit with Z = a R^b (--zr-a, --zr-b)")
    parser.add_argument("--device", default="cpu", help="torch device of the model (default cpu)")
    parser.add_argument("--tile-batch", type=int, default=8, help="tiles forecast together (bounds memory)")
    parser.add_argument("--sampler", help="a diffusion model's sampler, e.g. ddim or dpmpp_2m (default: the "
                                          "model class's; a distilled student's: ddim)")
    parser.add_argument("--sampling-steps", type=int, help="its steps (default: the model class's; a distilled "
                                                           "student's: the steps it was distilled to)")
    parser.add_argument("--guidance-scale", type=float, help="classifier-free guidance w (STLDM; 0: one call per step)")
    if source is not None:
        get_converter(source).add_arguments(parser)
    if not any("--to-dbz" in action.option_strings for action in parser._actions):
        parser.add_argument("--to-dbz", action="store_true", help="convert rain to reflectivity with Z = a R^b")
    if not any("--zr-a" in action.option_strings for action in parser._actions):
        parser.add_argument("--zr-a", type=float, help="a of Z = a R^b (default 200)")
        parser.add_argument("--zr-b", type=float, help="b of Z = a R^b (default 1.6)")
    return parser


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Parse in two passes: ``--source`` first, then with that source's options."""
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--source", choices=list(converters()))
    known, _ = first.parse_known_args(argv)
    parser = build_parser(known.source)
    args = parser.parse_args(argv)
    if args.inputs and args.source is None:
        parser.error("--inputs needs --source (the format of the files, as for nowcast-prep)")
    return args


def read_observed(args: argparse.Namespace, model: ModelInputs) -> ObservedFrames:
    """The observed frames the parsed arguments name, checked against the model."""
    if args.store is not None:
        return read_store_inputs(args.store, model, time=args.time, to_dbz=args.to_dbz, to_rain=args.to_rain,
                                 zr=(args.zr_a, args.zr_b))
    options = {key: value for key, value in vars(args).items() if key not in COMMON}
    options = {key: value for key, value in options.items() if value is not None}
    return read_raw_inputs(args.source, args.inputs, options, model, time=args.time, to_rain=args.to_rain)


def run(args: argparse.Namespace) -> dict[str, Path]:
    """Forecast as the parsed arguments say; returns the written paths (``forecast``, ``gif``)."""
    from nowcast_pl.forecasting import forecast, load_forecaster

    if args.members < 1:
        raise UsageError(f"--members must be >= 1, got {args.members}")
    output_format(args.output)
    gif = args.gif or args.output.with_suffix(".gif")
    for path in (args.output, gif):
        check_writable(path, overwrite=args.overwrite)
    sampling = {"sampler": args.sampler, "sampling_steps": args.sampling_steps, "guidance_scale": args.guidance_scale}
    forecaster = load_forecaster(args.checkpoint, device=args.device,
                                 **{key: value for key, value in sampling.items() if value is not None})
    model = ModelInputs.from_hparams(forecaster.hparams)
    observed = read_observed(args, model)
    ensemble = forecast(forecaster, observed.values, members=args.members, seed=args.seed,
                        metadata={"unit": observed.units}, tile_batch=args.tile_batch)
    dataset = forecast_dataset(ensemble, observed, model, attrs=_provenance(args, forecaster))
    written = {"forecast": write_forecast(dataset, args.output, overwrite=args.overwrite)}
    written["gif"] = write_quicklook(gif, dataset, observed.values[-1], value_range=model.value_range)
    return written


def _provenance(args: argparse.Namespace, forecaster: Any) -> dict[str, Any]:
    return {"model": type(forecaster).__name__, "checkpoint": str(args.checkpoint), "members": args.members,
            "seed": args.seed}


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nowcast forecast``; the exit status (2 for inputs or arguments the user must fix)."""
    args = parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        written = run(args)
    except USER_ERRORS as error:
        if os.environ.get("NOWCAST_DEBUG"):
            raise
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(f"{PROG}: forecast written to {written['forecast']}")
    print(f"{PROG}: quick-look GIF written to {written['gif']}")
    return 0
