"""``nowcast report``: score runs, checkpoints, baselines and forecast stores on one store and protocol.

    nowcast report --config configs/demo.yaml --source simvp=runs/demo \\
        --source persistence=configs/demo_persistence.yaml --source steps=configs/baselines/steps.yaml \\
        --members 8 --output runs/demo-report --candidate simvp --require-beat persistence

The data (store, split, grid, ``value_range``) come from the ``data`` section of ``--config``, read as
``nowcast fit --config ...`` reads it (:func:`nowcast_pl.config.read_config`: ``config:`` includes, several
``--config``, and overrides such as ``--data.init_args.batch_size 2`` after the report's own options);
thresholds and protocol from its ``model.init_args`` unless given. Writes into ``--output``: ``report.md`` and
``table.csv`` (per threshold and lead time, each score with its interval ``<score>_lo``, ``<score>_hi``),
``scores/<source>.json``, ``intervals.json``, ``{csi,hss,fss,crps}_by_lead.png``, ``rank_histogram.png`` and
``reliability.png`` (ensembles), and ``panel_<source>.gif``; then prints one line per source (members, sampler,
sampling seconds per forecast, CRPS with its interval) and one comparison line (CSI at the lowest threshold, CRPS)
of ``--candidate`` against every other source, each difference with its paired interval.
Intervals are percentile intervals of a bootstrap over whole events (:mod:`nowcast_pl.report.intervals`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from nowcast_pl.config import read_config
from nowcast_pl.metrics.bootstrap import Interval
from nowcast_pl.report.evaluate import Evaluation, evaluate_sources
from nowcast_pl.report.figures import panel_gif
from nowcast_pl.report.intervals import BootstrapSettings, ScoreIntervals
from nowcast_pl.report.sources import EvaluationSettings, load_source
from nowcast_pl.report.tables import markdown_report, score_key, table_rows, write_csv
from nowcast_pl.viz import ensemble_figures, lead_time_figure, plt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nowcast report", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, type=Path, action="append",
                        help="config as for `nowcast fit` (e.g. a run's config.yaml); repeat to compose")
    parser.add_argument("--source", action="append", required=True, metavar="NAME=PATH",
                        help="run folder, .ckpt, baseline .yaml or forecast .zarr (repeat)")
    parser.add_argument("--store", help="override data.init_args.store")
    parser.add_argument("--split", default="test", choices=("test", "val", "predict"))
    parser.add_argument("--members", type=int, default=8, help="members per window of stochastic sources")
    parser.add_argument("--thresholds", type=float, nargs="+", help="event thresholds in the store's units")
    parser.add_argument("--protocol", help="metric protocol (default: the config's, else pysteps)")
    parser.add_argument("--fss-scale", type=int, default=4, help="FSS neighbourhood side (pixels) in the table")
    parser.add_argument("--max-batches", type=int, help="score only the first batches")
    parser.add_argument("--panel-window", type=int, default=0, help="window (index in the split) of the GIFs")
    parser.add_argument("--output", type=Path, default=Path("runs/report"), help="report folder")
    parser.add_argument("--candidate", help="source compared with all others (default: the first)")
    parser.add_argument("--require-beat", action="append", default=[], metavar="NAME",
                        help="exit with status 1 unless the candidate beats NAME on both CSI and CRPS")
    parser.add_argument("--resamples", type=int, default=1000,
                        help="bootstrap resamples of the events for the intervals")
    parser.add_argument("--bootstrap-seed", type=int, default=0, help="seed of the bootstrap draws")
    parser.add_argument("--confidence", type=float, default=0.95, help="coverage of the intervals")
    return parser


def run_report(args: argparse.Namespace, overrides: list[str] = ()) -> int:
    """Score the sources and write the report; ``overrides`` follow ``--config`` as in ``nowcast fit``."""
    overrides = [*overrides, *(["--data.init_args.store", args.store] if args.store else [])]
    report = read_config(args.config, overrides, build=("data",))
    model_args = report.config.model.init_args
    thresholds = tuple(args.thresholds or model_args.get("thresholds") or ())
    if not thresholds:
        raise ValueError("nowcast report: no thresholds; pass --thresholds or set model.init_args.thresholds")
    settings = EvaluationSettings(protocol=args.protocol or model_args.get("protocol") or "pysteps",
                                  thresholds=thresholds, members=args.members)
    datamodule = report.datamodule
    named = [spec.split("=", 1) if "=" in spec else (Path(spec).stem, spec) for spec in args.source]
    sources = [load_source(name, path, report, settings) for name, path in named]
    bootstrap = BootstrapSettings(resamples=args.resamples, seed=args.bootstrap_seed, confidence=args.confidence)
    candidate = args.candidate or sources[0].name
    for name in [candidate, *args.require_beat]:
        if name not in {source.name for source in sources}:
            raise ValueError(f"nowcast report: no source named {name!r}; sources: {sorted(s.name for s in sources)}")
    evaluation = evaluate_sources(sources, datamodule, settings, split=args.split, max_batches=args.max_batches,
                                  panel_window=args.panel_window, fss_scales=(1, args.fss_scale, 16))
    intervals = ScoreIntervals(evaluation.statistics, evaluation.events, evaluation.event_names, bootstrap)
    members = {source.name: source.members for source in sources}
    written = write_outputs(args.output, evaluation, intervals, members, datamodule, settings, args.fss_scale,
                            candidate)
    print(f"report         {args.output}")
    for what, path in written.items():
        print(f"  {what:<14} {path}")
    print(intervals.describe(args.split))
    print_sources(sources, evaluation, intervals, datamodule.units)
    return print_comparisons(evaluation.scores, intervals, candidate, settings, datamodule.units, args.require_beat)


def write_outputs(folder: Path, evaluation: Evaluation, intervals: ScoreIntervals, members: dict[str, int],
                  datamodule, settings: EvaluationSettings, fss_scale: int, candidate: str) -> dict[str, Path]:
    """Write the tables, score and interval JSONs, figures and GIFs; returns what → path."""
    scores, panel = evaluation.scores, evaluation.panel
    (folder / "scores").mkdir(parents=True, exist_ok=True)
    layout = dict(thresholds=settings.thresholds, unit=datamodule.units, out_frames=datamodule.out_frames,
                  time_step_minutes=datamodule.time_step_minutes, fss_scale=fss_scale)
    for name, values in scores.items():
        (folder / "scores" / f"{name}.json").write_text(json.dumps(values, indent=1, sort_keys=True))
    written = {"table": folder / "table.csv", "markdown": folder / "report.md", "scores": folder / "scores",
               "intervals": folder / "intervals.json"}
    write_csv(table_rows(scores, intervals=intervals, **layout), written["table"])
    written["markdown"].write_text(markdown_report(scores, members, intervals=intervals, **layout))
    written["intervals"].write_text(json.dumps(intervals.to_json(candidate), indent=1))
    figures = {f"{score}_by_lead": lead_time_figure(scores, score, **layout) for score in ("csi", "hss", "fss", "crps")}
    figures |= ensemble_figures(scores, thresholds=settings.thresholds, unit=datamodule.units)
    for name, figure in figures.items():
        written[name] = folder / f"{name}.png"
        figure.savefig(written[name], dpi=100)
        plt.close(figure)
    init = str(np.datetime64(panel.init_time, "s")).replace("T", " ") + " UTC"
    for name, forecast in panel.forecasts.items():
        written[f"gif {name}"] = folder / f"panel_{name}.gif"
        panel_gif(written[f"gif {name}"], truth=panel.truth, forecast=forecast, title=f"{name}, from {init}",
                  units=datamodule.units, value_range=datamodule.value_range,
                  time_step_minutes=datamodule.time_step_minutes)
    return written


def print_sources(sources: list, evaluation: Evaluation, intervals: ScoreIntervals, unit: str) -> None:
    """One line per source: members, how it forecasts, sampling seconds per forecast (window and member), CRPS
    with its interval."""
    width = max(len(source.name) for source in sources)
    for source in sources:
        crps = intervals.interval(source.name, "crps")
        bounds = f" [{crps.low:.3f}, {crps.high:.3f}]" if crps.defined else ""
        print(f"  {source.name:<{width}}  {source.members} member{'s' if source.members > 1 else ''}, "
              f"{source.describe()}: {evaluation.seconds_per_forecast[source.name]:.3f} s per forecast, "
              f"CRPS {evaluation.scores[source.name]['crps']:.3f}{bounds} {unit}")


def print_comparisons(scores: dict[str, dict[str, float]], intervals: ScoreIntervals, candidate: str,
                      settings: EvaluationSettings, unit: str, require_beat: list[str]) -> int:
    """One line per other source: CSI at the lowest threshold (higher is better) and CRPS (lower is better), each
    with the difference candidate − other and its paired interval ("not significant" when it contains 0).

    Returns:
        1 if the candidate does not beat every ``require_beat`` source on both scores (point estimates), else 0.
    """
    key = score_key("csi", min(settings.thresholds), unit)
    mine = scores[candidate]
    status = 0
    for name, theirs in scores.items():
        if name == candidate:
            continue
        csi_better, crps_better = mine[key] > theirs[key], mine["crps"] < theirs["crps"]
        verdict = "beats" if csi_better and crps_better else "does NOT beat"
        csi = _difference(csi_better, intervals.difference(candidate, name, key))
        crps = _difference(crps_better, intervals.difference(candidate, name, "crps"))
        print(f"{candidate} {verdict} {name}: {key} {mine[key]:.3f} vs {theirs[key]:.3f} ({csi}), "
              f"CRPS {mine['crps']:.3f} vs {theirs['crps']:.3f} {unit} ({crps})")
        if name in require_beat and not (csi_better and crps_better):
            status = 1
    return status


def _difference(better: bool, difference: Interval) -> str:
    """"better, +0.073 [+0.051, +0.095]", with ", not significant" when the interval contains 0."""
    text = f"{'better' if better else 'worse'}, {difference.estimate:+.3f}"
    if not difference.defined:
        return f"{text}, no interval"
    text += f" [{difference.low:+.3f}, {difference.high:+.3f}]"
    return f"{text}, not significant" if difference.contains(0.0) else text


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``nowcast report`` (also ``python -m nowcast_pl.report``)."""
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    if overrides and not overrides[0].startswith("--"):
        parser.error(f"unrecognized arguments: {' '.join(overrides)}")
    return run_report(args, overrides)
