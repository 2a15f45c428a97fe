"""Replacing a directory (a Zarr store) by another one so that a reader never sees a half-written state.

``source`` is written completely beside ``target`` (same folder, so the same file system), then put in place.
On Linux both paths are swapped in one ``renameat2(RENAME_EXCHANGE)`` call (Linux ≥ 3.15; ext4, xfs, btrfs,
tmpfs), so ``target`` is at every moment either the old or the new directory. Where the call is missing or
refused (other systems, some network file systems), the old directory is renamed aside, the new one renamed
in and the old one removed: a kill between the two renames leaves ``<target>.old`` and ``source`` complete,
and :func:`replace_directory` run again restores the order.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def replace_directory(source: Path, target: Path) -> None:
    """Put the directory ``source`` at ``target``, removing what ``target`` held.

    Args:
        source: the complete new directory, in the same folder as ``target``.
        target: the path readers open.
    """
    aside = target.with_name(target.name + ".old")
    if aside.exists() and not target.exists():  # a previous fallback replacement was killed between renames
        aside.rename(target)
    if not target.exists():
        source.rename(target)
        return
    if _exchange(source, target):
        shutil.rmtree(source)
        return
    shutil.rmtree(aside, ignore_errors=True)
    target.rename(aside)
    source.rename(target)
    shutil.rmtree(aside)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically with ``renameat2(RENAME_EXCHANGE)``; False where the system cannot."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
    return result == 0
