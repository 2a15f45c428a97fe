"""``nowcast-prep <source> --src RAW --dst STORE [--workers N] [--overwrite]``: raw archive → radar store.

``nowcast-prep validate STORE`` reads every chunk of a store and lists each damaged event.

``nowcast-prep export-mlcast STORE --dst DATASET.zarr --license ... --created-by ... --created-with ...
--identifier ...`` writes a radar store or a forecast store as an mlcast dataset (docs/mlcast.md).

Also runnable as ``python -m data_prep``. ``nowcast-prep --help`` lists the sources with the raw layout each
expects; ``nowcast-prep <source> --help`` adds that source's options. Mistakes the user can fix (a missing
archive, an unknown source, a store that is already complete) end with one line on stderr and exit status 1
(2 for command-line syntax), without a traceback.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import NoReturn

from data_prep.errors import UsageError
from data_prep.recorded_options import check_same_options, options_record, stored_attributes
from data_prep.registry import converters
from data_prep.runner import convert, report_path
from nowcast_pl.data.integrity import check_store
from nowcast_pl.data.mlcast import MlcastAttributes
from nowcast_pl.data.mlcast_export import export_mlcast
from nowcast_pl.data.schema import StoreValidationError

PROG = "nowcast-prep"
USER_ERRORS = (UsageError, FileNotFoundError, FileExistsError, NotADirectoryError, StoreValidationError)
VALIDATE = "validate"
EXPORT = "export-mlcast"
COMMON = ("source", "src", "dst", "workers", "overwrite", "skip_if_complete", "progress")


class _Parser(argparse.ArgumentParser):
    """Reports command-line errors as one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _layouts() -> str:
    blocks = [f"{name}:\n  " + cls.layout_help.strip().replace("\n", "\n  ") for name, cls in converters().items()]
    return "raw layout expected by each source:\n\n" + "\n\n".join(blocks)


def _needs_src(cls: type) -> bool:
    """A converter whose ``__init__`` gives ``src`` a default (e.g. ``synthetic``) needs no --src."""
    src = inspect.signature(cls.__init__).parameters.get("src")
    return src is None or src.default is inspect.Parameter.empty


def build_parser() -> argparse.ArgumentParser:
    """The parser with one sub-command per registered converter."""
    parser = _Parser(prog=PROG, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_layouts(),
                     description="Convert a raw radar archive into a nowcast_pl radar store (Zarr). "
                                 "An interrupted conversion resumes when the same command is run again.")
    sub = parser.add_subparsers(dest="source", metavar="SOURCE", required=True, parser_class=_Parser,
                                help=f"one of: {', '.join(converters())}, or {VALIDATE} STORE, or {EXPORT} STORE")
    for name, cls in converters().items():
        summary = cls.layout_help.strip().splitlines()[0] if cls.layout_help else name
        p = sub.add_parser(name, help=summary, description=cls.layout_help,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.add_argument("--src", required=_needs_src(cls), type=Path, help="root of the raw archive")
        p.add_argument("--dst", required=True, type=Path, help="radar store to write (a *.zarr directory)")
        p.add_argument("--workers", type=int, default=1, help="reader processes (default 1)")
        p.add_argument("--overwrite", action="store_true",
                       help="replace an existing store; only a radar store or an empty folder is deleted")
        p.add_argument("--skip-if-complete", action="store_true",
                       help="do nothing (exit 0) if --dst is already a complete store")
        p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
        cls.add_arguments(p)
    check = sub.add_parser(VALIDATE, help="read every chunk of a radar store and list each damaged event",
                           description="Read every chunk of a radar store; print one line per damaged event (array "
                                       "and frame indices) and exit 1, or print one OK line and exit 0.")
    check.add_argument("store", type=Path, help="radar store to check (a *.zarr directory)")
    _add_export_parser(sub)
    return parser


def _add_export_parser(sub: argparse._SubParsersAction) -> None:
    export = sub.add_parser(EXPORT, help="write a radar store or a forecast store as an mlcast dataset",
                            description="Write a radar store (nowcast-prep) or a forecast store (nowcast predict) "
                                        "as an mlcast dataset (CF-convention Zarr, docs/mlcast.md); check it with "
                                        "`mlcast.validate_dataset source_data radar_precipitation DATASET`.")
    export.add_argument("store", type=Path, help="radar store or forecast store (a *.zarr directory)")
    export.add_argument("--dst", required=True, type=Path, help="mlcast dataset to write (a *.zarr directory)")
    export.add_argument("--license", required=True, help="SPDX licence identifier of the data, e.g. CC-BY-4.0")
    export.add_argument("--created-by", required=True, help="contact, 'Name <email>'")
    export.add_argument("--created-with", required=True,
                        help="https://github.com/mlcast-community/mlcast-dataset-<organisation>-<name>@<version>")
    export.add_argument("--identifier", required=True,
                        help="<country_code>-<entity>-<physical_variable>, e.g. FI-FMI-rainfall_flux")
    export.add_argument("--dataset-version", default="0.1.0", help="version of the dataset (default 0.1.0)")
    export.add_argument("--lead-minutes", type=int, default=None, help="forecast stores: the lead time to export")
    export.add_argument("--member", default=0, type=_member,
                        help="forecast stores: the ensemble member (0..N-1) or 'mean' (default 0)")
    export.add_argument("--overwrite", action="store_true", help="replace --dst if it is an mlcast dataset")


def _member(text: str) -> int | str:
    if text == "mean" or text.isdigit():
        return text if text == "mean" else int(text)
    raise argparse.ArgumentTypeError(f"--member must be 'mean' or a member number 0..N-1, got {text!r}")


def export(args: argparse.Namespace) -> int:
    """``nowcast-prep export-mlcast``: write the store as an mlcast dataset; the exit status."""
    try:
        attributes = MlcastAttributes(license=args.license, created_by=args.created_by,
                                      created_with=args.created_with, identifier=args.identifier,
                                      dataset_version=args.dataset_version)
        summary = export_mlcast(args.store, args.dst, attributes, lead_minutes=args.lead_minutes, member=args.member,
                                overwrite=args.overwrite)
    except ValueError as error:  # bad attributes or a store mlcast cannot hold: named in the message
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    print(f"{PROG}: {args.dst}: variable '{summary['variable']}', {summary['frames']} frames, "
          f"{summary['missing_times']} missing times", file=sys.stderr)
    return 0


def validate(store: Path) -> int:
    """``nowcast-prep validate STORE``: print each damage found in the store; the exit status (1 if damaged)."""
    problems, counts = check_store(store)
    for line in problems:
        print(line)
    if problems:
        print(f"{PROG}: error: {store} is damaged ({len(problems)} problem(s) above); reconvert it with the "
              "same command and --overwrite", file=sys.stderr)
        return 1
    print(f"{PROG}: {store}: OK, every chunk of its {counts['events']} events ({counts['frames']} frames) read",
          file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> dict | None:
    """Convert as the parsed arguments say; None when skipped because the store is complete.

    A complete store is skipped (``--skip-if-complete``) only if it was converted with the same options.
    """
    options = {k: v for k, v in vars(args).items() if k not in COMMON}
    record = options_record(args.source, args.src, options)
    if args.skip_if_complete and (stored_attributes(args.dst) or {}).get("complete"):
        check_same_options(args.dst, record)
        return None
    if args.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {args.workers}")
    converter = converters()[args.source](args.src, **options)
    return convert(converter, args.dst, workers=args.workers, overwrite=args.overwrite, progress=args.progress,
                   options=record)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nowcast-prep``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.source == VALIDATE:
            return validate(args.store)
        if args.source == EXPORT:
            return export(args)
        summary = run(args)
    except USER_ERRORS as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; committed events are kept, rerun the same command to resume",
              file=sys.stderr)
        return 130
    if summary is None:
        print(f"{PROG}: {args.dst} is already complete; nothing to do", file=sys.stderr)
        return 0
    print(f"{PROG}: {args.dst}: {summary['events_written']} events written ({summary['frames_written']} frames, "
          f"{summary['frames_missing']} missing), {summary['events_resumed']} already there, "
          f"{summary['events_empty']} without data; {summary['report_entries']} report entries in "
          f"{report_path(args.dst)}", file=sys.stderr)
    return 0
