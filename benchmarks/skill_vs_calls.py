"""Skill against denoiser calls: the demo RainDiff teacher sampled with DDIM and DPM-Solver++(2M), and its
progressively distilled student (nowcast_pl/tasks/distillation.py), on the test split of the synthetic store.

Trains the demo teacher (configs/demo_raindiff.yaml) unless ``--teacher`` names its checkpoint, distils it from
``--distill-from`` to ``--distill-to`` DDIM calls per segment (one ``nowcast fit``, ``--stage-steps`` optimiser
steps per halving) unless ``--student`` names a distilled checkpoint, then runs ``nowcast test`` for every
(sampler, calls) pair: the teacher with DDIM and DPM-Solver++(2M) at each of ``--calls``, the student with DDIM
at each count it was distilled for. Scores (the `raindiff` protocol with ``--members`` members): CRPS, CSI at
the demo thresholds pooled over members, ensemble FSS, the spread-skill ratio, the rank histogram's distance
from flat (total variation from uniform: 0 is flat, 1 - 1/(N+1) all in one bin) and seconds per forecast (wall
time of ``nowcast test`` over windows x members, set-up included). Calls are per residual segment.

Prints one JSON object and writes it to ``--output`` with a figure (skill against calls, log axis) at ``--figure``.
The JSON's ``targets`` object holds, for each target of issue 20, the measured value, the target and ``met``.

Usage (the full run; about 2 h on a free 2-core CPU):
    nowcast-prep synthetic --dst data/synthetic.zarr --events 96 --seed 0
    python -m benchmarks.skill_vs_calls --store data/synthetic.zarr
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from benchmarks.harness import REPO, output_argument, write_result  # noqa: E402
from nowcast_pl.checkpoints import read_checkpoint  # noqa: E402
from nowcast_pl.cli import build_cli  # noqa: E402
from nowcast_pl.config import read_config  # noqa: E402
from nowcast_pl.tasks.distillation import RECORD, allowed_steps  # noqa: E402

CONFIG = REPO / "configs" / "demo_raindiff.yaml"
PAPER_CALLS = 250
SCORES = ("crps", "csi", "fss", "spread_skill", "rank_flatness")


def _common(args: argparse.Namespace, run: str) -> list[str]:
    return ["--config", str(CONFIG), "--data.init_args.store", str(args.store), "--runs_root", str(args.workdir),
            "--run_name", run, "--trainer.enable_progress_bar", "false"]


def final_checkpoint(run: Path) -> Path:
    """The newest ``last*.ckpt`` of a run folder."""
    return max((run / "checkpoints").glob("last*.ckpt"), key=lambda p: p.stat().st_mtime_ns)


def train_teacher(args: argparse.Namespace) -> Path:
    build_cli(["fit", *_common(args, "teacher"), "--trainer.max_steps", str(args.teacher_steps)])
    return final_checkpoint(args.workdir / "teacher")


def distil(args: argparse.Namespace, teacher: Path) -> Path:
    stages = int(math.log2(args.distill_from // args.distill_to))
    build_cli(["fit", *_common(args, "student"), "--model.init_args.teacher_checkpoint", str(teacher),
               "--model.init_args.distill_teacher_steps", str(args.distill_from),
               "--model.init_args.distill_student_steps", str(args.distill_to),
               "--model.init_args.distill_stage_steps", str(args.stage_steps),
               "--model.init_args.sampling_steps", str(args.distill_to), "--model.init_args.lr", str(args.lr),
               "--model.init_args.warmup_steps", "0", "--model.init_args.schedule", "constant",
               "--trainer.max_steps", str(stages * args.stage_steps)])
    return final_checkpoint(args.workdir / "student")


def rank_flatness(scores: dict[str, float]) -> float:
    """Total-variation distance of the rank histogram from uniform."""
    bins = [v for k, v in sorted(scores.items()) if k.startswith("rank_hist/bin_")]
    return 0.5 * sum(abs(f - 1 / len(bins)) for f in bins) if bins else math.nan


def score(args: argparse.Namespace, checkpoint: Path, run: str, sampler: str, calls: int, forecasts: int) -> dict:
    start = time.perf_counter()
    build_cli(["test", *_common(args, run), "--ckpt_path", str(checkpoint), "--model.init_args.sampler", sampler,
               "--model.init_args.sampling_steps", str(calls), "--model.init_args.eval_members", str(args.members),
               "--model.init_args.member_chunk", str(args.members), "--trainer.limit_test_batches",
               str(args.test_batches)])
    seconds = time.perf_counter() - start
    scores = json.loads((args.workdir / run / "test_metrics.json").read_text())
    csi = {k: v for k, v in scores.items() if k.startswith("csi@") and "/" not in k}
    fss = {k: v for k, v in scores.items() if k.startswith("fss_ens") and "/lead_" not in k}
    return {"calls": calls, "crps": scores["crps"], "csi": csi, "csi_mean": sum(csi.values()) / max(len(csi), 1),
            "fss": fss, "spread_skill": scores["spread_skill"], "rank_flatness": rank_flatness(scores),
            "seconds_per_forecast": seconds / forecasts}


def targets(curves: dict[str, list[dict]]) -> dict[str, dict]:
    """Issue 20's RainDiff targets, each with the measured value, the target and whether it is met."""
    by_calls = {name: {row["calls"]: row for row in rows} for name, rows in curves.items()}
    reference = by_calls["ddim"].get(PAPER_CALLS)
    student, dpm = by_calls["student"].get(4), by_calls["dpmpp_2m"].get(4)
    if reference is None or student is None:
        return {}
    crps_ratio = student["crps"] / reference["crps"]
    spread_ratio = student["spread_skill"] / reference["spread_skill"]
    result = {
        "student4_crps_within_3pct_of_ddim250": {"value": crps_ratio, "target": "<= 1.03", "met": crps_ratio <= 1.03},
        "student4_spread_skill_within_10pct_of_ddim250": {"value": spread_ratio, "target": "in [0.9, 1.1]",
                                                          "met": 0.9 <= spread_ratio <= 1.1},
    }
    if dpm is not None:
        result["student4_crps_below_dpmpp_2m_4"] = {"value": student["crps"], "target": f"< {dpm['crps']:.4g}",
                                                   "met": student["crps"] < dpm["crps"]}
    if 1 in by_calls["student"]:
        result["student1_crps_reported"] = {"value": by_calls["student"][1]["crps"], "target": "reported",
                                            "met": True}
    return result


def figure(curves: dict[str, list[dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    labels = {"ddim": "teacher, DDIM", "dpmpp_2m": "teacher, DPM-Solver++(2M)", "student": "student (distilled)"}
    for key, axis, title in (("crps", axes[0], "CRPS (lower is better)"), ("csi_mean", axes[1], "mean CSI"),
                             ("spread_skill", axes[2], "spread-skill ratio (1 is ideal)")):
        for name, rows in curves.items():
            axis.plot([r["calls"] for r in rows], [r[key] for r in rows], marker="o", label=labels[name])
        axis.set_xscale("log", base=2)
        axis.set_xlabel("denoiser calls per segment")
        axis.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=REPO / "data" / "synthetic.zarr")
    parser.add_argument("--workdir", type=Path, default=REPO / "runs" / "skill_vs_calls")
    parser.add_argument("--teacher", type=Path, help="demo teacher checkpoint (default: train one)")
    parser.add_argument("--student", type=Path, help="distilled checkpoint (default: distil the teacher)")
    parser.add_argument("--teacher-steps", type=int, default=400)
    parser.add_argument("--distill-from", type=int, default=256)
    parser.add_argument("--distill-to", type=int, default=1)
    parser.add_argument("--stage-steps", type=int, default=200)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--calls", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, PAPER_CALLS])
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--test-batches", type=int, default=4, help="test batches of 16 windows")
    output_argument(parser)
    parser.set_defaults(output=REPO / "benchmarks" / "results" / "skill_vs_calls.json")
    parser.add_argument("--figure", type=Path, default=REPO / "docs" / "figures" / "skill_vs_calls.png")
    args = parser.parse_args()
    if not args.store.exists():
        parser.error(f"--store {args.store} does not exist; make it with: nowcast-prep synthetic --dst {args.store} "
                     "--events 96 --seed 0")
    started = time.perf_counter()
    teacher = args.teacher or train_teacher(args)
    student = args.student or distil(args, teacher)
    record = read_checkpoint(student)[RECORD]
    data = read_config([CONFIG], ["--data.init_args.store", str(args.store)], build=("data",)).datamodule
    data.setup("test")
    forecasts = min(len(data.datasets["test"]), args.test_batches * data.eval_batch_size) * args.members
    curves: dict[str, list[dict]] = {"ddim": [], "dpmpp_2m": [], "student": []}
    for calls in args.calls:
        for sampler in ("ddim", "dpmpp_2m"):
            curves[sampler].append(score(args, teacher, f"{sampler}_{calls}", sampler, calls, forecasts))
        if calls in allowed_steps(record):
            curves["student"].append(score(args, student, f"student_{calls}", "ddim", calls, forecasts))
    result = {
        "benchmark": "skill_vs_calls", "config": str(CONFIG.relative_to(REPO)),
        "teacher_steps": args.teacher_steps if args.teacher is None else None, "teacher": str(teacher),
        "distillation": {k: v for k, v in record.items() if k != "teacher_state"},
        "stage_steps": record["stage_steps"], "members": args.members, "forecasts": forecasts,
        "curves": curves, "targets": targets(curves), "wall_seconds": time.perf_counter() - started,
    }
    figure(curves, args.figure)
    write_result(result, args.output, module="benchmarks.skill_vs_calls", argv=None)


if __name__ == "__main__":
    main()
