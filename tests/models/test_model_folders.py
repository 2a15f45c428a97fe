"""A model is a folder: importing one model imports no other, and class paths from before the move still load."""

import importlib

import pytest

from nowcast_pl.models.moved import MOVED_CLASS_PATHS, current_class_path
from tests.helpers.imports import imported_after


def test_importing_raindiff_imports_no_stldm():
    modules = imported_after("nowcast_pl.models.raindiff")
    assert "nowcast_pl.models.raindiff.task" in modules
    assert not {m for m in modules if m.startswith("nowcast_pl.models.stldm")}


def test_the_shared_tasks_package_imports_no_model():
    modules = imported_after("nowcast_pl.tasks")
    assert not {m for m in modules if m.startswith("nowcast_pl.models.")}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_CLASS_PATHS.items()))
def test_moved_class_paths_resolve_to_the_same_class_today(old, new):
    assert current_class_path(old) == new
    module, _, name = new.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    assert f"{cls.__module__}.{cls.__name__}".startswith(module + ".") and cls.__name__ == old.rpartition(".")[2]
    assert _resolve(old) is None  # the table is needed: the old path no longer imports


def _resolve(path: str) -> type | None:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError:
        return None


def test_class_paths_that_did_not_move_are_kept():
    for path in ("tests.helpers.toy_diffusion.ToyDiffusionTask", "nowcast_pl.models.raindiff.RainDiffTask"):
        assert current_class_path(path) == path
