"""Where a radar store may be written: only an absent path, an empty folder or an existing radar store.

An overwrite deletes only a radar store (or an empty folder), never another folder or file, so a mistyped
destination cannot delete data that is not a store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nowcast_pl.data.schema import EVENT_ARRAYS, SCHEMA_VERSION, TIME_ARRAYS

#: Top-level entries of a radar store besides ``zarr.json`` (``*.partial`` are temporary files of zarr writes).
STORE_MEMBERS = frozenset(TIME_ARRAYS + EVENT_ARRAYS + ("pixel_valid", "static_mask", "y", "x"))


def is_radar_store(path: str | Path) -> bool:
    """Whether ``path`` is a radar store: a folder with a ``zarr.json`` whose ``schema`` attribute is ours, or
    holding nothing but a store's members (a store whose creation was cut, or whose ``zarr.json`` is damaged)."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        return False
    names = {p.name for p in path.iterdir()}
    if all(n == "zarr.json" or n in STORE_MEMBERS or n.endswith(".partial") for n in names):
        return True
    try:
        return json.loads((path / "zarr.json").read_text()).get("attributes", {}).get("schema") == SCHEMA_VERSION
    except (OSError, ValueError, AttributeError):
        return False


def check_destination(path: str | Path) -> None:
    """Check that ``path`` is absent, an empty folder or a radar store: the only places a writer writes into,
    and the only things an overwrite deletes.

    Raises:
        FileExistsError: if ``path`` is a file or a folder that is neither empty nor a radar store.
    """
    path = Path(path)
    if not path.exists() or path.is_dir() and (is_radar_store(path) or not any(path.iterdir())):
        return
    raise FileExistsError(
        f"{path} exists and is not a radar store nor an empty folder, so nothing is written into it or deleted; "
        "choose another destination (--dst), or move it away yourself"
    )


def remove_store(path: str | Path) -> None:
    """Delete the radar store (or empty folder) at ``path``; a symbolic link is removed, not its target.

    Raises:
        FileExistsError: from :func:`check_destination`, if ``path`` is anything else.
    """
    path = Path(path)
    check_destination(path)
    if path.is_symlink():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
