"""Make the README's report figures from the real FMI sample (pysteps-data, never committed).

    PYTHONPATH=. python docs/figures/make_sample_figure.py --samples ../shared/radar-samples

Converts the FMI composites (two 40-frame events, 5 min) with ``nowcast-prep``'s FMI converter into a
temporary store, then runs ``nowcast report`` on the 2017-05-09 event at 256 x 160 px (configs/data/fmi.yaml):
persistence, Lagrangian extrapolation and an 8-member STEPS ensemble (pysteps), at 5/10/20 dBZ (the sample
event is light rain). Copies the CSI-by-lead curves, the STEPS reliability diagram and the STEPS GIF panel
into docs/figures/.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import yaml

from data_prep.registry import get_converter
from data_prep.runner import convert
from nowcast_pl.report.cli import main as report

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BASELINES = {
    "persistence": {"class_path": "nowcast_pl.models.baselines.PersistenceTask", "init_args": {}},
    "extrapolation": {"class_path": "nowcast_pl.models.baselines.ExtrapolationTask", "init_args": {}},
    "steps": {"class_path": "nowcast_pl.models.baselines.StepsTask",
              "init_args": {"pixel_size_km": 4.8, "member_chunk": 8}},
}
FIGURES = {"csi_by_lead.png": "fmi_csi_by_lead.png", "reliability.png": "fmi_steps_reliability.png",
           "panel_steps.gif": "fmi_steps_panel.gif"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=Path, default=REPO.parent / "shared" / "radar-samples")
    parser.add_argument("--members", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = work / "fmi.zarr"
        convert(get_converter("fmi")(args.samples / "radar/fmi/pgm"), store, workers=2, progress=False)
        data = yaml.safe_load((REPO / "configs/data/fmi.yaml").read_text())["data"]
        data["init_args"] |= {"store": str(store), "num_workers": 0, "batch_size": 4}
        sources = []
        for name, model in BASELINES.items():
            path = work / f"{name}.yaml"
            path.write_text(yaml.safe_dump({"model": model, "data": data}))
            sources += ["--source", f"{name}={path}"]
        out = work / "report"
        report(["--config", str(work / "persistence.yaml"), *sources, "--thresholds", "5", "10", "20",
                "--protocol", "pysteps", "--members", str(args.members), "--output", str(out),
                "--candidate", "steps"])
        for produced, committed in FIGURES.items():
            shutil.copy(out / produced, HERE / committed)
            print(f"wrote {HERE / committed} ({(HERE / committed).stat().st_size / 1e3:.0f} kB)")
        shutil.copy(out / "report.md", HERE / "fmi_report.md")


if __name__ == "__main__":
    main()
