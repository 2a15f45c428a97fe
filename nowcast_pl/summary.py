"""``python -m nowcast_pl.summary RUN [BASELINE]``: where a run's results are, and how it compares.

Prints the TensorBoard folder, the PNG panel and the metrics JSON of ``RUN`` and, given a baseline run
(e.g. persistence), a one-line comparison of the lowest-threshold CSI; the exit status is 1 when the run
does not beat the baseline.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_PIXEL_CSI = re.compile(r"csi@(-?[0-9.]+)[^/]*")


def lowest_threshold_csi(scores: dict[str, float]) -> tuple[str, float]:
    """(key, value) of the pixel CSI at the lowest threshold, e.g. ``("csi@20dBZ", 0.61)``."""
    lowest = {}
    for key in scores:
        match = _PIXEL_CSI.fullmatch(key)
        if match:
            lowest[float(match.group(1))] = key
    if not lowest:
        raise ValueError("no 'csi@<threshold>' score in the metrics; were thresholds configured?")
    key = lowest[min(lowest)]
    return key, scores[key]


def describe(run: Path) -> dict[str, float]:
    metrics = run / "test_metrics.json"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics} does not exist: run `nowcast test` for this run first")
    print(f"run            {run}")
    print(f"  tensorboard  tensorboard --logdir {run}")
    print(f"  panel        {run / 'test_panel.png'}")
    print(f"  metrics      {metrics}")
    return json.loads(metrics.read_text())


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print(__doc__.strip().splitlines()[0], file=sys.stderr)
        return 2
    scores = describe(Path(args[0]))
    key, value = lowest_threshold_csi(scores)
    if len(args) == 2:
        base_key, base = lowest_threshold_csi(describe(Path(args[1])))
        verdict = "beats" if value > base else "does NOT beat"
        print(f"{Path(args[0]).name} {key} = {value:.4f} {verdict} {Path(args[1]).name} {base_key} = {base:.4f}")
        return 0 if value > base else 1
    print(f"{Path(args[0]).name} {key} = {value:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
