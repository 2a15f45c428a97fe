"""One folder per model, each holding everything that exists only for that model.

* ``raindiff`` — RainDiff and its DiffCast ablation: network, U-Net, context encoder and attention blocks,
  :class:`~nowcast_pl.models.raindiff.RainDiffTask`, the official-weight converter and its key tables.
* ``stldm`` — STLDM: VAE, U-Net, attention, :class:`~nowcast_pl.models.stldm.STLDMTask`, converter.
* ``simvp`` — SimVP (IncepU / gSTA translators) and :class:`~nowcast_pl.models.simvp.SimVPTask`.
* ``baselines`` — the non-learned baselines: persistence, Lagrangian extrapolation, STEPS.

This package imports none of them, so importing one model never imports another it does not use. Blocks
shared by several models are in :mod:`nowcast_pl.layers`; the shared task machinery in :mod:`nowcast_pl.tasks`.
"""
