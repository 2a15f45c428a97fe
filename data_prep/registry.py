"""Registry of converters: source name → :class:`~data_prep.base.Converter` class.

Converters are found in the modules listed in :data:`CONVERTER_MODULES`: every concrete ``Converter``
subclass with a ``name`` in such a module is registered under that name. A module that does not exist (yet)
is simply not listed; any other import error of an existing module is raised, so that a broken converter is
never hidden.
"""

from __future__ import annotations

import functools
import importlib
import inspect

from data_prep.base import Converter

CONVERTER_MODULES = (
    "data_prep.composites",
    "data_prep.synthetic",
    "data_prep.sevir",
    "data_prep.hko7",
    "data_prep.meteonet",
    "data_prep.shanghai",
    "data_prep.cikm",
    "data_prep.mlcast",
)


def _import_if_present(module: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            return None
        raise


@functools.cache
def converters() -> dict[str, type[Converter]]:
    """All available converters by source name, in :data:`CONVERTER_MODULES` order.

    Raises:
        ImportError: if an existing converter module fails to import.
        ValueError: if two different classes claim the same name.
    """
    found: dict[str, type[Converter]] = {}
    for module_name in CONVERTER_MODULES:
        module = _import_if_present(module_name)
        if module is None:
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Converter) and cls.name and not inspect.isabstract(cls):
                if found.setdefault(cls.name, cls) is not cls:
                    raise ValueError(f"converter name {cls.name!r} is used by both {found[cls.name]} and {cls}")
    return found


def get_converter(name: str) -> type[Converter]:
    """The converter class of a source.

    Raises:
        KeyError: naming the known sources, if ``name`` is not one of them.
    """
    available = converters()
    if name not in available:
        raise KeyError(f"unknown source {name!r}; available: {', '.join(available) or 'none'}")
    return available[name]
