"""The zoo's architectures, one file each: every module in this package is imported, and so registered.

Models from elsewhere register the same way: name their modules in $ZOO_MODEL_MODULES (comma-separated), or
declare them under the `zoo.models` entry-point group of an installed package.
"""

import importlib
import os
import pkgutil
from importlib.metadata import entry_points

for _module in pkgutil.iter_modules(__path__, prefix=f"{__name__}."):
    importlib.import_module(_module.name)

for _name in filter(None, (part.strip() for part in os.environ.get("ZOO_MODEL_MODULES", "").split(","))):
    importlib.import_module(_name)

for _entry in entry_points(group="zoo.models"):
    _entry.load()
