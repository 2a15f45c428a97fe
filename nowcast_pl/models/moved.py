"""Class paths that moved when each model got its own folder, so files written before the move still load.

A checkpoint keeps the class path its run was configured with (``hyper_parameters["_class_path"]``, written
by LightningCLI), and a run folder's ``config.yaml`` keeps it as ``model.class_path``. Those written before the
move name ``nowcast_pl.tasks.*``; :func:`current_class_path` gives the path that imports today.
"""

from __future__ import annotations

MOVED_CLASS_PATHS: dict[str, str] = {
    "nowcast_pl.tasks.RainDiffTask": "nowcast_pl.models.raindiff.RainDiffTask",
    "nowcast_pl.tasks.raindiff.RainDiffTask": "nowcast_pl.models.raindiff.RainDiffTask",
    "nowcast_pl.tasks.STLDMTask": "nowcast_pl.models.stldm.STLDMTask",
    "nowcast_pl.tasks.stldm.STLDMTask": "nowcast_pl.models.stldm.STLDMTask",
    "nowcast_pl.tasks.SimVPTask": "nowcast_pl.models.simvp.SimVPTask",
    "nowcast_pl.tasks.simvp.SimVPTask": "nowcast_pl.models.simvp.SimVPTask",
    "nowcast_pl.tasks.PersistenceTask": "nowcast_pl.models.baselines.PersistenceTask",
    "nowcast_pl.tasks.persistence.PersistenceTask": "nowcast_pl.models.baselines.PersistenceTask",
    "nowcast_pl.tasks.ExtrapolationTask": "nowcast_pl.models.baselines.ExtrapolationTask",
    "nowcast_pl.tasks.extrapolation.ExtrapolationTask": "nowcast_pl.models.baselines.ExtrapolationTask",
    "nowcast_pl.tasks.StepsTask": "nowcast_pl.models.baselines.StepsTask",
    "nowcast_pl.tasks.steps.StepsTask": "nowcast_pl.models.baselines.StepsTask",
}


def current_class_path(path: str) -> str:
    """The class path that imports today for ``path``, which may predate the model folders.

    Args:
        path: a dotted class path, e.g. ``"nowcast_pl.tasks.raindiff.RainDiffTask"``.

    Returns:
        Its entry in :data:`MOVED_CLASS_PATHS` (``"nowcast_pl.models.raindiff.RainDiffTask"``), or ``path``
        itself when it did not move (``"tests.helpers.toy_diffusion.ToyDiffusionTask"`` stays as it is).
    """
    return MOVED_CLASS_PATHS.get(path, path)
