"""Trainer options that take a number of batches (int) or a fraction (float) keep an integer an integer.

Lightning annotates ``limit_{train,val,test,predict}_batches`` and ``overfit_batches`` as
``Union[int, float]``, where ``1`` means one batch and ``1.0`` the whole split. Python's ``typing`` caches
unions and treats ``Union[int, float]`` and ``Union[float, int]`` as equal, so the annotation jsonargparse
reads may list ``float`` first; jsonargparse then parses ``1`` (from YAML or the command line) as ``1.0`` and
a "one batch" smoke test runs every batch. :func:`integers_before_floats` reorders those unions on a parser.
"""

from __future__ import annotations

from typing import Union, get_args, get_origin


def integers_before_floats(parser) -> list[str]:
    """Make every trainer option typed ``Union[..., float, ..., int, ...]`` try ``int`` first.

    Args:
        parser: a LightningCLI (sub-command) parser holding the ``trainer.*`` arguments.

    Returns:
        The option names that were reordered.
    """
    reordered = []
    for action in parser._actions:
        hint = getattr(action, "_typehint", None)
        if not action.dest.startswith("trainer.") or get_origin(hint) is not Union:
            continue
        args = get_args(hint)
        if int in args and float in args and args.index(float) < args.index(int):
            ordered = (int, *(a for a in args if a is not int))
            # Union[...] would return the cached union with float first; build the alias directly instead
            # (as jsonargparse does when it sorts unions).
            action._typehint = type(hint)(Union, ordered, name=getattr(hint, "_name", None))
            reordered.append(action.dest)
    return reordered
