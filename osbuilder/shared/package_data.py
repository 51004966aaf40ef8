"""Data files that live beside a module (the schemas, k3s's flags), read through the
module's own loader: on a node the agent's modules are imported from a zip (stage
node-package), where a path made from `__file__` names no file; in a checkout or an
installed wheel the loader reads the folder."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec


def read_beside(spec: ModuleSpec | None, name: str) -> bytes:
    """The bytes of `name` (a relative path) beside the module of `spec`; OSError when the
    installation lacks it."""
    loader, origin = getattr(spec, "loader", None), getattr(spec, "origin", None)
    get_data = getattr(loader, "get_data", None)
    if get_data is None or not isinstance(origin, str):
        raise FileNotFoundError(f"{name}: no loader that reads data files")
    data: bytes = get_data(os.path.join(os.path.dirname(origin), name))
    return data
