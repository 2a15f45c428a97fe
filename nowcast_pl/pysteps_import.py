"""The one way this project imports pysteps: what pysteps prints when imported goes to the log, not stdout.

Importing pysteps prints ``Pysteps configuration file found at: ...`` on standard output (pysteps
``__init__``), which would mix into a command's own results. Every pysteps import in ``nowcast_pl`` and
``data_prep`` goes through :func:`import_pysteps`; pysteps is imported only where it is used.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from types import ModuleType

log = logging.getLogger(__name__)


def import_pysteps(name: str = "pysteps") -> ModuleType:
    """Import a pysteps module (e.g. ``"pysteps.io.exporters"``), logging its import-time output at debug level.

    Args:
        name: dotted module name, ``pysteps`` or one of its sub-modules.

    Returns:
        The imported module.

    Raises:
        ValueError: if ``name`` is not pysteps or a sub-module of it.
    """
    if name != "pysteps" and not name.startswith("pysteps."):
        raise ValueError(f"import_pysteps imports pysteps modules only, got {name!r}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        module = importlib.import_module(name)
    for line in printed.getvalue().splitlines():
        if line.strip():
            log.debug("%s", line.strip())
    return module
