"""The options that shape a store's content, recorded in the store so that a resume cannot mix two conversions.

A conversion records its source name, its resolved ``--src`` and the converter's content options (e.g.
``--seed``, ``--grid``, ``--to-dbz``; never ``--workers`` or ``--no-progress``) in the group attribute
``conversion_options``. Resuming an unfinished store, or skipping a complete one with ``--skip-if-complete``,
is refused when the options differ; the error names each differing option with its old and new value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from data_prep.base import Converter
from data_prep.errors import UsageError
from nowcast_pl.data.schema import StoreValidationError

ATTRIBUTE = "conversion_options"


def options_record(source: str, src: str | Path | None, options: dict[str, Any]) -> dict[str, Any]:
    """The record of a conversion: source name, resolved ``src`` (None without one) and content options,
    as JSON values (tuples become lists, paths strings)."""
    record = {"source": source, "src": None if src is None else str(Path(src).resolve()), **options}
    return json.loads(json.dumps(record, default=str))


def converter_record(converter: Converter) -> dict[str, Any]:
    """:func:`options_record` of a constructed converter."""
    return options_record(converter.name, converter.src, converter.content_options())


def stored_attributes(dst: Path) -> dict[str, Any] | None:
    """The group attributes of the store at ``dst``; None if there is no store.

    Raises:
        StoreValidationError: if its ``zarr.json`` cannot be read as JSON (a damaged store).
    """
    path = dst / "zarr.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError) as error:
        raise StoreValidationError(f"{path} is damaged ({type(error).__name__}: {error}); pass --overwrite to "
                                   "rebuild the store, or choose another --dst") from None


def _flag(key: str) -> str:
    return "source" if key == "source" else "--" + key.replace("_", "-")


def check_same_options(dst: Path, record: dict[str, Any]) -> None:
    """Refuse to continue (or skip) the store at ``dst`` if it records other conversion options.

    A complete store without a record (written before options were recorded) is accepted as it is; an
    unfinished one is refused, since nothing says what its first part was converted with.

    Raises:
        UsageError: naming each differing option, its recorded and its new value, and the fixes.
    """
    attrs = stored_attributes(dst)
    if attrs is None:
        return
    fixes = "rerun with the same options to continue it, pass --overwrite to rebuild it, or choose another --dst"
    old = attrs.get(ATTRIBUTE)
    if old is None:
        if attrs.get("complete"):
            return
        raise UsageError(f"{dst} is an unfinished store that records no conversion options (an older nowcast-prep "
                         "wrote it), so continuing it could mix two conversions; pass --overwrite to rebuild it, "
                         "or choose another --dst")
    differ = [f"{_flag(k)} {json.dumps(old.get(k))} (this run: {json.dumps(record.get(k))})"
              for k in sorted(set(old) | set(record)) if old.get(k) != record.get(k)]
    if differ:
        raise UsageError(f"{dst} was converted with other options: {'; '.join(differ)}; {fixes}")
