"""The zoo's architectures, one file each: every module in this package is imported, and so registered.

Models from elsewhere (plugins) register the same way: name their modules in $ZOO_MODEL_MODULES (comma-separated),
or declare them under the `zoo.models` entry-point group of an installed package. A plugin is code, imported into
every zoo process. One that fails to import is left out: its error is one warning line (logger `zoo`, stderr when
logging is not configured), `zoo.core.registry.failed_plugins()` lists it, and asking for a model it would have
registered names it in the unknown-model error; every other model works as before.
"""

import importlib
import logging
import os
import pkgutil
from importlib.metadata import entry_points

from zoo.core.registry import load_plugin

# The zoo's own models are part of the zoo: one that fails to import is a bug, and raises.
for _module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)

for _name in filter(None, (part.strip() for part in os.environ.get("ZOO_MODEL_MODULES", "").split(","))):
    load_plugin(f"module {_name!r} (in $ZOO_MODEL_MODULES)", lambda name=_name: importlib.import_module(name))

try:
    _entries = list(entry_points(group="zoo.models"))
except Exception as _error:  # noqa: BLE001 (an installed package's broken metadata must not stop the zoo)
    logging.getLogger("zoo").warning("warning: could not read the zoo.models entry points: %s: %s",
                                     type(_error).__name__, _error)
    _entries = []
for _entry in _entries:
    load_plugin(f"entry point {_entry.name!r} ({_entry.value}, group zoo.models)", _entry.load)
