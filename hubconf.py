"""torch.hub entry points: one per zoo model that runs on inputs, named with underscores.

    model = torch.hub.load("path/to/zoo", "mnist_mlp", source="local", weights="DEFAULT")

`weights="DEFAULT"` gives the latest released version, `weights=N` version N (yours or released), and
`weights=None` (the default, as in torchvision) an untrained module; the module comes in eval mode.
"""

# Import names, as torch.hub checks them; pip install the zoo (or its requirements) to have them all.
dependencies = ["torch", "torchvision", "safetensors", "numpy", "PIL", "platformdirs", "filelock"]

import zoo as _zoo  # noqa: E402  (torch.hub reads `dependencies` before anything is imported)
from zoo.hub import entrypoint as _entrypoint  # noqa: E402

for _name in _zoo.list_models():
    if _zoo.get_model(_name).exportable:
        globals()[_name.replace("-", "_")] = _entrypoint(_name)
