"""The base task knows no subclass: it imports neither the report nor a model, and its run-time settings are its
own (a diffusion task adds its sampler settings, RainDiff its compiled U-Net)."""

import ast
from dataclasses import fields
from pathlib import Path

import nowcast_pl.tasks.base as base
from nowcast_pl.models.raindiff.task import RainDiffTask
from nowcast_pl.models.stldm.task import STLDMTask
from nowcast_pl.tasks.base import NowcastTask
from nowcast_pl.tasks.diffusion import DiffusionTask, SamplerSettings
from tests.helpers.imports import imported_after

SAMPLER_SETTINGS = {f.name for f in fields(SamplerSettings)}


def _is_upward(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in ("nowcast_pl.report", "nowcast_pl.models"))


def test_the_base_task_module_imports_nothing_from_the_report_or_the_models():
    tree = ast.parse(Path(base.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {m for m in imported if _is_upward(m)}
    assert not {m for m in imported_after("nowcast_pl.tasks.base") if _is_upward(m)}


def test_the_base_runtime_settings_hold_no_sampler_setting():
    assert SAMPLER_SETTINGS == {"sampler", "sampling_steps", "eta", "guidance_scale"}
    assert not (SAMPLER_SETTINGS | {"compile_denoiser"}) & set(NowcastTask.runtime_settings)
    assert set(NowcastTask.runtime_settings) < set(DiffusionTask.runtime_settings)
    assert SAMPLER_SETTINGS <= set(DiffusionTask.runtime_settings) == set(STLDMTask.runtime_settings)
    assert "compile_denoiser" in RainDiffTask.runtime_settings
