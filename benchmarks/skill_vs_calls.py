"""Skill against denoiser calls: a demo teacher sampled with DDIM and DPM-Solver++(2M), and its progressively
distilled students (nowcast_pl/tasks/distillation.py), on the test split of the synthetic store.

``--model raindiff``: the demo RainDiff (configs/demo_raindiff.yaml; ``make demo`` trains it, ``--teacher`` names
its checkpoint), distilled from DDIM 32 to 4 calls per residual segment, then that student further to 2 and to
1 call. ``--model stldm``: the tiny STLDM (configs/tiny/stldm.yaml trained for 400 steps here), sampled as the
paper samples it (DDIM with classifier-free guidance w = 1, two U-Net calls per step), distilled from guided
DDIM 32 to 2 steps with the guidance folded into the student (one call per step), then further to 1.
Each distillation is one ``nowcast fit`` with ``--stage-steps`` optimiser steps per halving.

Every forecast source (the teacher at each sampler and step count, every student at the count it was distilled
to) is scored in one pass over the same test windows by ``nowcast report``'s machinery
(:func:`nowcast_pl.report.evaluate.evaluate_sources`) with ``--members`` members: CRPS, CSI at the config's
thresholds pooled over members, ensemble FSS, the spread-skill ratio, the rank histogram's distance from flat
(total variation from uniform: 0 is flat, 1 - 1/(N+1) all in one bin), and seconds per forecast (sampling only,
per window and member). Each score has its 95 % interval from the report's bootstrap over whole events
(:class:`nowcast_pl.report.intervals.ScoreIntervals`), and each target's ratio or difference its paired interval
(the same drawn events for both sources). Calls are network calls per forecast (per residual segment for RainDiff),
two per step for a guided sampler.

Prints one JSON object and writes it to ``--output`` with a figure (skill against calls, log axis) at ``--figure``.
The JSON's ``targets`` object holds, for each target of issue 20, the measured value, its interval, the target and
``met`` (judged on the point estimate; the interval says whether the data can tell).

Usage (the store of ``make demo``; OMP_NUM_THREADS=1 keeps two runs side by side on 2 cores):
    nowcast-prep synthetic --dst data/synthetic.zarr --events 96 --seed 0
    python -m benchmarks.skill_vs_calls --model raindiff --teacher runs/demo-raindiff/checkpoints/last.ckpt
    python -m benchmarks.skill_vs_calls --model stldm
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness import REPO, output_argument, write_result  # noqa: E402
from nowcast_pl.checkpoints import read_checkpoint  # noqa: E402
from nowcast_pl.cli import build_cli  # noqa: E402
from nowcast_pl.config import read_config  # noqa: E402
from nowcast_pl.metrics import score_key  # noqa: E402
from nowcast_pl.metrics.bootstrap import Interval, percentile_interval  # noqa: E402
from nowcast_pl.report.evaluate import evaluate_sources  # noqa: E402
from nowcast_pl.report.intervals import BootstrapSettings, ScoreIntervals  # noqa: E402
from nowcast_pl.report.sources import EvaluationSettings, load_source  # noqa: E402
from nowcast_pl.tasks.distillation import RECORD  # noqa: E402

SCORES = ("crps", "csi_mean", "spread_skill", "rank_flatness")


@dataclass(frozen=True)
class Setup:
    """One model's benchmark: its demo config, the paper's sampler and the distillation chain.

    Attributes:
        config: the teacher's config (relative to the repository).
        teacher_overrides: ``nowcast fit`` options that make the demo teacher from ``config``.
        paper_steps: the paper's DDIM steps (the reference of the targets).
        guidance: the paper's classifier-free guidance scale w (0: none); the teacher samples with it, and the
            first distillation stage folds it into the student.
        distill_from: DDIM steps of the teacher that the first student learns.
        students: step counts of the chain of students, each distilled from the previous one.
        steps: the teacher's step counts scored with each sampler.
    """

    config: str
    teacher_overrides: tuple[str, ...]
    paper_steps: int
    guidance: float
    distill_from: int
    students: tuple[int, ...]
    steps: tuple[int, ...]


SETUPS = {
    "raindiff": Setup("configs/demo_raindiff.yaml", (), paper_steps=250, guidance=0.0, distill_from=32,
                      students=(4, 2, 1), steps=(1, 2, 4, 8, 16, 32, 250)),
    "stldm": Setup("configs/tiny/stldm.yaml",
                   ("--trainer.max_steps", "400", "--model.init_args.schedule_steps", "400",
                    "--trainer.limit_val_batches", "0"),
                   paper_steps=20, guidance=1.0, distill_from=32, students=(2, 1), steps=(1, 2, 4, 8, 16, 20, 32)),
}


def _common(args: argparse.Namespace, run: str) -> list[str]:
    return ["--config", str(REPO / args.setup.config), "--data.init_args.store", str(args.store),
            "--runs_root", str(args.workdir), "--run_name", run, "--trainer.enable_progress_bar", "false"]


def final_checkpoint(run: Path) -> Path:
    """The newest ``last*.ckpt`` of a run folder."""
    return max((run / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)


def train_teacher(args: argparse.Namespace) -> Path:
    build_cli(["fit", *_common(args, "teacher"), *args.setup.teacher_overrides])
    return final_checkpoint(args.workdir / "teacher")


def distil(args: argparse.Namespace, teacher: Path, start: int, end: int, guidance: float) -> Path:
    """Distil ``teacher`` from DDIM ``start`` to ``end`` steps (one stage per halving) in run ``student_<end>``."""
    stages = int(math.log2(start // end))
    run = f"student_{end}"
    build_cli(["fit", *_common(args, run), "--model.init_args.teacher_checkpoint", str(teacher),
               "--model.init_args.distill_teacher_steps", str(start),
               "--model.init_args.distill_student_steps", str(end),
               "--model.init_args.distill_stage_steps", str(args.stage_steps),
               "--model.init_args.teacher_guidance_scale", str(guidance),
               "--model.init_args.guidance_scale", "0", "--model.init_args.sampler", "ddim",
               "--model.init_args.sampling_steps", str(end), "--model.init_args.lr", str(args.lr),
               "--model.init_args.warmup_steps", "0", "--model.init_args.schedule", "constant",
               "--trainer.max_steps", str(stages * args.stage_steps), "--trainer.limit_val_batches", "0"])
    return final_checkpoint(args.workdir / run)


@dataclass(frozen=True)
class Forecaster:
    """One scored row: ``kind`` (``ddim``, ``dpmpp_2m`` or ``student``) at ``steps`` sampler steps."""

    kind: str
    steps: int
    checkpoint: Path
    guidance: float

    @property
    def name(self) -> str:
        return f"{self.kind}_{self.steps}"

    @property
    def calls(self) -> int:
        return self.steps * (2 if self.guidance else 1)

    def runtime(self) -> dict[str, Any]:
        sampler = "ddim" if self.kind == "student" else self.kind
        return {"sampler": sampler, "sampling_steps": self.steps, "guidance_scale": self.guidance}


def rank_flatness(scores: dict[str, float]) -> float:
    """Total-variation distance of the rank histogram from uniform."""
    bins = [v for k, v in sorted(scores.items()) if k.startswith("rank_hist/bin_")]
    return 0.5 * sum(abs(f - 1 / len(bins)) for f in bins) if bins else math.nan


def _bounds(interval: Interval) -> list[float | None]:
    return [value if math.isfinite(value) else None for value in (interval.low, interval.high)]


def row(forecaster: Forecaster, scores: dict[str, float], intervals: ScoreIntervals, seconds: float,
        thresholds: tuple[float, ...], unit: str, fss_scale: int) -> dict[str, Any]:
    name = forecaster.name
    csi = {score_key("csi", t, unit): scores[score_key("csi", t, unit)] for t in thresholds}
    fss = {key: value for key, value in scores.items()
           if key.startswith("fss_ens") and key.endswith(f"/s{fss_scale}")}
    return {"steps": forecaster.steps, "calls": forecaster.calls, "guidance_scale": forecaster.guidance,
            "crps": scores["crps"], "crps_interval": _bounds(intervals.interval(name, "crps")),
            "csi": csi, "csi_intervals": {key: _bounds(intervals.interval(name, key)) for key in csi},
            "csi_mean": sum(csi.values()) / len(csi), "fss": fss,
            "spread_skill": scores["spread_skill"],
            "spread_skill_interval": _bounds(intervals.interval(name, "spread_skill")),
            "rank_flatness": rank_flatness(scores),
            "seconds_per_forecast": seconds}


def paired(intervals: ScoreIntervals, a: str, b: str, key: str, contrast) -> Interval:
    """``contrast(a, b)`` on ``key`` with its percentile interval over the same drawn events."""
    estimate = contrast(np.float64(intervals.estimates[a][key]), np.float64(intervals.estimates[b][key]))
    with np.errstate(divide="ignore", invalid="ignore"):
        replicates = contrast(intervals.replicates[a][key], intervals.replicates[b][key])
    return Interval(float(estimate), *percentile_interval(replicates, intervals.settings.confidence,
                                                          intervals.n_events))


def target(value: Interval, wanted: str, met: bool) -> dict[str, Any]:
    return {"value": value.estimate, "interval": _bounds(value), "target": wanted, "met": bool(met)}


def targets(model: str, setup: Setup, intervals: ScoreIntervals) -> dict[str, dict]:
    """Issue 20's targets of ``model``: each with its value, paired interval, target and whether it is met."""
    reference = f"ddim_{setup.paper_steps}"
    if model == "stldm":
        student = "student_2"
        ratio = paired(intervals, student, reference, "crps", np.divide)
        return {"student2_crps_within_3pct_of_guided_ddim20": target(ratio, "<= 1.03", ratio.estimate <= 1.03)}
    crps = paired(intervals, "student_4", reference, "crps", np.divide)
    spread = paired(intervals, "student_4", reference, "spread_skill", np.divide)
    against_dpm = paired(intervals, "student_4", "dpmpp_2m_4", "crps", np.subtract)
    one_call = intervals.interval("student_1", "crps")
    return {
        "student4_crps_within_3pct_of_ddim250": target(crps, "<= 1.03", crps.estimate <= 1.03),
        "student4_spread_skill_within_10pct_of_ddim250": target(spread, "in [0.9, 1.1]",
                                                                0.9 <= spread.estimate <= 1.1),
        "student4_crps_below_dpmpp_2m_4": target(against_dpm, "< 0 (student - DPM-Solver++(2M) at 4 calls)",
                                                 against_dpm.estimate < 0),
        "student1_crps_reported": target(one_call, "reported", True),
    }


def figure(curves: dict[str, list[dict]], path: Path, model: str) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    labels = {"ddim": "teacher, DDIM", "dpmpp_2m": "teacher, DPM-Solver++(2M)", "student": "students (distilled)"}
    for key, axis, title in (("crps", axes[0], "CRPS (lower is better)"), ("csi_mean", axes[1], "mean CSI"),
                             ("spread_skill", axes[2], "spread-skill ratio (1 is ideal)")):
        for name, rows in curves.items():
            calls = [r["calls"] for r in rows]
            axis.plot(calls, [r[key] for r in rows], marker="o", label=labels[name])
            if key + "_interval" in rows[0]:
                low = [r[key + "_interval"][0] for r in rows]
                high = [r[key + "_interval"][1] for r in rows]
                if None not in low + high:
                    axis.fill_between(calls, low, high, alpha=0.15)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("network calls per forecast" + (" (per segment)" if model == "raindiff" else ""))
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{model}: skill against calls (shaded: 95 % bootstrap interval over events)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(SETUPS), required=True)
    parser.add_argument("--store", type=Path, default=REPO / "data" / "synthetic.zarr")
    parser.add_argument("--workdir", type=Path, help="runs of the benchmark (default runs/skill_vs_calls/MODEL)")
    parser.add_argument("--teacher", type=Path, help="the demo teacher's checkpoint (default: train one)")
    parser.add_argument("--students", type=Path, nargs="+",
                        help="distilled checkpoints of the chain, in order (default: distil them)")
    parser.add_argument("--stage-steps", type=int, default=100, help="optimiser steps per halving")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--test-batches", type=int, default=4, help="test batches of the config's eval batch size")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of the events")
    output_argument(parser)
    parser.add_argument("--figure", type=Path, help="default docs/figures/skill_vs_calls_MODEL.png")
    args = parser.parse_args()
    args.setup = setup = SETUPS[args.model]
    args.workdir = args.workdir or REPO / "runs" / "skill_vs_calls" / args.model
    args.output = args.output or REPO / "benchmarks" / "results" / f"skill_vs_calls_{args.model}.json"
    args.figure = args.figure or REPO / "docs" / "figures" / f"skill_vs_calls_{args.model}.png"
    if not args.store.exists():
        parser.error(f"--store {args.store} does not exist; make it with: nowcast-prep synthetic --dst {args.store} "
                     "--events 96 --seed 0")
    if args.students and len(args.students) != len(setup.students):
        parser.error(f"--students takes {len(setup.students)} checkpoints (DDIM {setup.students}), "
                     f"got {len(args.students)}")
    started = time.perf_counter()
    teacher = args.teacher or train_teacher(args)
    students, previous, steps, guidance = [], teacher, setup.distill_from, setup.guidance
    for index, count in enumerate(setup.students):
        student = args.students[index] if args.students else distil(args, previous, steps, count, guidance)
        students.append(student)
        previous, steps, guidance = student, count, 0.0
    distilled_seconds = time.perf_counter() - started

    forecasters = [Forecaster(kind, steps, teacher, setup.guidance)
                   for steps in setup.steps for kind in ("ddim", "dpmpp_2m")]
    forecasters += [Forecaster("student", count, path, 0.0)
                    for count, path in zip(setup.students, students, strict=True)]
    report = read_config([REPO / setup.config], ["--data.init_args.store", str(args.store)], build=("data",))
    model_args = report.config.model.init_args
    thresholds = tuple(model_args["thresholds"])
    settings = EvaluationSettings(protocol=model_args["protocol"], thresholds=thresholds, members=args.members)
    sources = [load_source(f.name, f.checkpoint, report, settings, runtime=f.runtime()) for f in forecasters]
    fss_scale = 4
    evaluation = evaluate_sources(sources, report.datamodule, settings, max_batches=args.test_batches,
                                  fss_scales=(1, fss_scale, 16))
    intervals = ScoreIntervals(evaluation.statistics, evaluation.events, evaluation.event_names,
                               BootstrapSettings(resamples=args.resamples))
    data = report.datamodule
    unit = data.units
    curves: dict[str, list[dict]] = {"ddim": [], "dpmpp_2m": [], "student": []}
    for forecaster in forecasters:
        curves[forecaster.kind].append(row(forecaster, evaluation.scores[forecaster.name], intervals,
                                           evaluation.seconds_per_forecast[forecaster.name], thresholds, unit,
                                           fss_scale))
    curves["student"].sort(key=lambda r: r["calls"])
    records = [{k: v for k, v in read_checkpoint(path)[RECORD].items() if k != "teacher_state"} for path in students]
    result = {
        "benchmark": "skill_vs_calls", "model": args.model, "config": setup.config,
        "teacher_overrides": list(setup.teacher_overrides), "teacher": str(teacher),
        "paper_sampler": {"sampler": "ddim", "steps": setup.paper_steps, "guidance_scale": setup.guidance},
        "students": [{"checkpoint": str(p), "distillation": r} for p, r in zip(students, records, strict=True)],
        "stage_steps": args.stage_steps, "members": args.members,
        "windows": min(len(data.datasets["test"]), args.test_batches * data.eval_batch_size),
        "events": evaluation.event_names, "bootstrap": intervals.describe("test"),
        "curves": curves, "targets": targets(args.model, setup, intervals),
        "seconds": {"teacher_and_distillation": distilled_seconds,
                    "scoring": time.perf_counter() - started - distilled_seconds},
    }
    figure(curves, args.figure, args.model)
    write_result(result, args.output, module="benchmarks.skill_vs_calls", argv=None)


if __name__ == "__main__":
    main()
