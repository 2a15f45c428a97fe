"""A model is a folder: importing one model imports no other."""

import subprocess
import sys


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_importing_raindiff_imports_no_stldm():
    modules = _imported_after("nowcast_pl.models.raindiff")
    assert "nowcast_pl.models.raindiff.task" in modules
    assert not {m for m in modules if m.startswith("nowcast_pl.models.stldm")}


def test_the_shared_tasks_package_imports_no_model():
    modules = _imported_after("nowcast_pl.tasks")
    assert not {m for m in modules if m.startswith("nowcast_pl.models.")}
