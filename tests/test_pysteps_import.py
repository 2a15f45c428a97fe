"""pysteps' import-time banner never reaches a command's standard output."""

import datetime as dt
import os
import subprocess
import sys

import pytest

from nowcast_pl.pysteps_import import import_pysteps
from tests.helpers import REPO
from tests.helpers.archives.operational import time_steps, write_fmi_archive

BANNER = "Pysteps configuration file found at"

# Each first import of pysteps in the project, run in a fresh interpreter so the import really happens there.
FIRST_IMPORTS = {
    "operational importer": "from data_prep.operational import pysteps_importer; pysteps_importer('fmi_pgm')",
    "dB transform": "import numpy; from nowcast_pl.models.baselines.rain_rate import rain_rate_db; "
                    "rain_rate_db(numpy.ones(3))",
    "motion": "import numpy; from nowcast_pl.models.baselines.extrapolation import estimate_motion; "
              "estimate_motion(numpy.zeros((3, 8, 8)), 'lucaskanade')",
}


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=120)


def test_a_bare_pysteps_import_prints_the_banner_on_stdout():
    # The premise of this file: without the helper, pysteps writes to stdout.
    done = _python("import pysteps")
    assert done.returncode == 0, done.stderr
    assert BANNER in done.stdout


@pytest.mark.parametrize("code", FIRST_IMPORTS.values(), ids=FIRST_IMPORTS.keys())
def test_first_pysteps_import_of_each_user_leaves_stdout_empty(code):
    done = _python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""


def test_nowcast_prep_on_an_operational_archive_prints_nothing_of_pysteps(tmp_path):
    write_fmi_archive(tmp_path / "raw", time_steps(dt.datetime(2021, 7, 4, 12), 3))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "data_prep", "fmi", "--src", str(tmp_path / "raw"),
                           "--dst", str(tmp_path / "fmi.zarr"), "--no-progress"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pysteps" not in done.stdout.lower()
    assert (tmp_path / "fmi.zarr" / "zarr.json").exists()


def test_no_module_imports_pysteps_but_through_the_helper():
    direct = [f"{path.relative_to(REPO)}:{number}"
              for package in ("nowcast_pl", "data_prep") for path in sorted((REPO / package).rglob("*.py"))
              for number, line in enumerate(path.read_text().splitlines(), 1)
              if line.strip().startswith(("import pysteps", "from pysteps"))]
    assert direct == []


def test_import_pysteps_refuses_other_modules():
    with pytest.raises(ValueError, match="import_pysteps imports pysteps modules only, got 'numpy'"):
        import_pysteps("numpy")
