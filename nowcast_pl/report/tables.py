"""The report's tables: one CSV row per (source, threshold, lead time), and a Markdown summary.

Scores come from :func:`nowcast_pl.report.evaluate.evaluate_sources` (keys as in ``docs/metrics.md``).
CRPS and MAE do not depend on a threshold; the CSV repeats them on every threshold's rows. Each score comes with
its bootstrap interval over events (:mod:`nowcast_pl.report.intervals`): two CSV columns ``<score>_lo`` and
``<score>_hi``, and a second summary table in the Markdown.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from nowcast_pl.metrics import lead_key, score_key
from nowcast_pl.metrics.bootstrap import Interval
from nowcast_pl.report.intervals import ScoreIntervals

CATEGORICAL = ("csi", "hss")


def table_rows(scores: dict[str, dict[str, float]], *, thresholds: Sequence[float], unit: str, out_frames: int,
               time_step_minutes: float, fss_scale: int, intervals: ScoreIntervals | None = None
               ) -> list[dict[str, object]]:
    """Rows ``source, threshold, lead_time_min ("all" for the aggregate)``, then ``csi, hss, fss_s<k>, crps, mae``,
    each followed by its interval ``<score>_lo, <score>_hi`` (NaN without ``intervals`` or without events enough).
    """
    rows = []
    for source, values in scores.items():
        for threshold in thresholds:
            for lead in [None, *range(1, out_frames + 1)]:
                row: dict[str, object] = {
                    "source": source, "threshold": f"{threshold:g} {unit}".strip(),
                    "lead_time_min": "all" if lead is None else round(lead * time_step_minutes)}
                columns = {score: score_key(score, threshold, unit, lead=lead) for score in CATEGORICAL}
                columns[f"fss_s{fss_scale}"] = score_key("fss", threshold, unit, lead=lead, fss_scale=fss_scale)
                columns |= {score: lead_key(score, lead) for score in ("crps", "mae")}
                for column, key in columns.items():
                    interval = intervals.interval(source, key) if intervals is not None else None
                    row[column] = values.get(key, math.nan)
                    row[f"{column}_lo"] = interval.low if interval is not None else math.nan
                    row[f"{column}_hi"] = interval.high if interval is not None else math.nan
                rows.append(row)
    return rows


def write_csv(rows: list[dict[str, object]], path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def markdown_report(scores: dict[str, dict[str, float]], members: dict[str, int], *, thresholds: Sequence[float],
                    unit: str, out_frames: int, time_step_minutes: float, fss_scale: int,
                    intervals: ScoreIntervals | None = None) -> str:
    """Markdown: a summary over all lead times (with its intervals), then CSI, HSS and FSS per threshold and
    CRPS per lead time."""
    labels = [f"{t:g}{unit}" for t in thresholds]
    head = ["source", "members", *[f"CSI {x}" for x in labels], *[f"HSS {x}" for x in labels],
            *[f"FSS {x} s{fss_scale}" for x in labels], "CRPS", "MAE"]
    keys = [score_key(score, t, unit, fss_scale=fss_scale) for score in ("csi", "hss", "fss") for t in thresholds]
    keys += ["crps", "mae"]
    body = [[source, str(members[source]), *[_fmt(values.get(key)) for key in keys]]
            for source, values in scores.items()]
    parts = ["## All lead times", _table(head, body)]
    if intervals is not None and intervals.defined:
        body = [[source, str(members[source]), *[_fmt_interval(intervals.interval(source, key)) for key in keys]]
                for source in scores]
        parts += [f"Intervals: {intervals.describe('scored')}.", _table(head, body)]
    leads = [f"+{round(t * time_step_minutes)} min" for t in range(1, out_frames + 1)]
    for score, name in (("csi", "CSI"), ("hss", "HSS"), ("fss", f"FSS (scale {fss_scale} px)")):
        for threshold, label in zip(thresholds, labels, strict=True):
            body = [[source] + [_fmt(values.get(score_key(score, threshold, unit, lead=t, fss_scale=fss_scale)))
                                for t in range(1, out_frames + 1)] for source, values in scores.items()]
            parts += [f"## {name} at {label} by lead time", _table(["source", *leads], body)]
    body = [[source] + [_fmt(values.get(lead_key("crps", t))) for t in range(1, out_frames + 1)]
            for source, values in scores.items()]
    parts += [f"## CRPS ({unit}) by lead time", _table(["source", *leads], body)]
    return "\n\n".join(parts) + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _fmt_interval(interval: Interval) -> str:
    return f"{interval.low:.3f}–{interval.high:.3f}" if interval.defined else "–"


def _table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)
