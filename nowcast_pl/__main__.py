"""``python -m nowcast_pl`` is the ``nowcast`` command."""

from nowcast_pl.cli import main

main()
