"""What a fresh interpreter has imported after each of the package's layering boundaries.

One subprocess imports :data:`IMPORT_ORDER` in turn and reports ``sys.modules`` after each, so the tests of
several boundaries share one interpreter start. Each set is cumulative: a test of "X imports no Y" on the set after
X holds only while the modules before X import no Y either, which the tests of those modules check.
"""

import functools
import json
import subprocess
import sys

IMPORT_ORDER = ("nowcast_pl.tasks.base", "nowcast_pl.tasks", "nowcast_pl.models.raindiff")
"""From the bottom of the task layer up: the base task, the shared task package, one model folder."""

_SCRIPT = """
import importlib, json, sys
seen = {}
for name in sys.argv[1:]:
    importlib.import_module(name)
    seen[name] = sorted(sys.modules)
print(json.dumps(seen))
"""


@functools.cache
def _imported_in_order() -> dict[str, frozenset[str]]:
    done = subprocess.run([sys.executable, "-c", _SCRIPT, *IMPORT_ORDER], capture_output=True, text=True, check=True)
    return {name: frozenset(modules) for name, modules in json.loads(done.stdout).items()}


def imported_after(module: str) -> frozenset[str]:
    """Every module in ``sys.modules`` of a fresh interpreter once it has imported ``IMPORT_ORDER`` up to
    ``module`` (one of them)."""
    if module not in IMPORT_ORDER:
        raise ValueError(f"{module} is not in IMPORT_ORDER {IMPORT_ORDER}; add it there")
    return _imported_in_order()[module]
