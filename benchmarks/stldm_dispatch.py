"""``official_parity.py`` and ``model_cost.py`` hand ``--model stldm`` (or an STLDM config) to the STLDM scripts."""

from __future__ import annotations

from pathlib import Path


def stldm_argv(argv: list[str]) -> list[str] | None:
    """``argv`` without ``--model stldm`` when the run is for STLDM (by flag or by config), else None."""
    pairs = list(zip(argv, argv[1:], strict=False))
    config = next((Path(b) for a, b in pairs if a == "--config"), None)
    if "--model=stldm" in argv or ("--model", "stldm") in pairs or (
            config is not None and config.is_file() and "STLDMTask" in config.read_text()):
        drop = {i for i, (a, b) in enumerate(pairs) if (a, b) == ("--model", "stldm")}
        return [a for i, a in enumerate(argv) if a != "--model=stldm" and i not in drop and i - 1 not in drop]
    return None
