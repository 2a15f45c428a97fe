"""The ``nowcast-convert raindiff|diffcast|stldm OFFICIAL OUT.ckpt`` command.

The converters themselves live with their models: :mod:`nowcast_pl.models.raindiff.convert` and
:mod:`nowcast_pl.models.stldm.convert`.
"""
