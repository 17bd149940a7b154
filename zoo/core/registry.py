"""The model registry: a private dict filled by a decorator, read by `get_model` and `list_models`.

The architectures (zoo/models/, $ZOO_MODEL_MODULES, the `zoo.models` entry points) are imported the first time
the registry is read, not when `zoo` is. `model_catalog` gives each model's plain metadata (names, summary,
recipes, parameter count) from a cache that is rebuilt whenever a file that defines a model changes, so a
listing or a shell completion answers without importing torch.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from zoo.core.errors import UnknownModelError

if TYPE_CHECKING:
    from zoo.core.spec import ModelSpec

_MODELS: dict[str, ModelSpec] = {}
_loaded = False
# Plugins that failed to import: what they are -> their error in one line.
_FAILED_PLUGINS: dict[str, str] = {}

S = TypeVar("S", bound=Callable[[], "ModelSpec"])
PACKAGE = Path(__file__).resolve().parent.parent  # zoo/
# Bumped whenever the catalog's entries change shape, so an older cache is never read as a newer one.
CATALOG_FORMAT = 1


def register_model(factory: S) -> S:
    """Register the spec that `factory()` returns; a name registered twice is a bug and raises."""
    spec = factory()
    if spec.name in _MODELS:
        raise ValueError(f"a model is already registered under the name {spec.name!r}")
    _MODELS[spec.name] = spec
    return factory


def load_models() -> None:
    """Import every architecture once (zoo.models does: the zoo's own, $ZOO_MODEL_MODULES, entry points)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a model module that reads the registry while it imports must not recurse
    try:
        importlib.import_module("zoo.models")
    except BaseException:
        _loaded = False
        raise


def get_model(name: str) -> ModelSpec:
    """The spec registered under `name`; an unknown name raises with the known ones listed."""
    load_models()
    try:
        return _MODELS[name]
    except KeyError:
        failed = "".join(f"; plugin {plugin} failed to import ({error}), so its models are missing"
                         for plugin, error in _FAILED_PLUGINS.items())
        raise UnknownModelError(
            f"unknown model {name!r}; expected one of: {', '.join(list_models())}{failed}"
        ) from None


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    load_models()
    return sorted(_MODELS)


def model_catalog() -> dict[str, dict[str, Any]]:
    """Every registered model's plain metadata (spec_summary), by name, sorted.

    Read from a cache file in the user's cache folder while no file that defines a model (nor the zoo's own
    sources) has changed since it was written; otherwise every model is imported, described and the cache
    rewritten. In a process that has already imported the models, it is described from them directly.
    """
    sources = None if _loaded else model_sources()
    cache = catalog_cache(sources) if sources is not None else None
    if cache is not None:
        try:
            stored = json.loads(cache.read_text())
            if sources is not None and stored.get("key") == sources_key(sources):
                return stored["models"]
        except (OSError, ValueError, KeyError, AttributeError):
            pass  # no cache yet, or one from another build: rebuilt below
    models = _described()
    if cache is not None and sources is not None:
        _write_quietly(cache, {"key": sources_key(sources), "models": models})
    return models


_described_memo: tuple[Any, dict[str, dict[str, Any]]] = ((), {})


def _described() -> dict[str, dict[str, Any]]:
    """The catalog from the imported specs, built once per set of registered specs."""
    global _described_memo
    names = list_models()
    which = tuple((name, id(_MODELS[name])) for name in names)
    if _described_memo[0] != which:
        # Through JSON, so that a catalog read from the cache and one described here are equal (tuples become lists).
        _described_memo = (which, json.loads(json.dumps({name: spec_summary(_MODELS[name]) for name in names})))
    return _described_memo[1]


def spec_summary(spec: ModelSpec) -> dict[str, Any]:
    """What a spec says about its model, as JSON-ready data: everything but its stored versions."""
    module = spec.build(spec.recipe())
    interface = spec.interface
    return {
        "name": spec.name,
        "summary": spec.summary,
        "source": spec.source,
        "task": spec.task,
        "dataset": spec.dataset,
        "preprocessing": spec.preprocessing,
        "input": interface.input.to_dict() if interface else None,
        "output": interface.output.to_dict() if interface else None,
        "form": interface.form.value if interface else None,
        "exportable": spec.exportable,
        "notes": spec.notes,
        "parameters": sum(p.numel() for p in module.parameters()),
        "architecture": repr(module),
        "default_recipe": spec.default_recipe,
        "recipes": {key: recipe.to_dict() for key, recipe in spec.recipes.items()},
    }


def model_sources() -> list[tuple[str, str]] | None:
    """(module, file) of every module that defines models, found without importing any of them; None when a
    plugin module cannot be located (the import itself then reports why)."""
    folder = PACKAGE / "models"
    found = [(f"zoo.models.{m.name}", str(folder / (m.name if m.ispkg else f"{m.name}.py")))
             for m in pkgutil.iter_modules([str(folder)])]
    plugins = [part.strip() for part in os.environ.get("ZOO_MODEL_MODULES", "").split(",") if part.strip()]
    plugins += [entry.module for entry in entry_points(group="zoo.models")]
    for name in plugins:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return None
        if spec is None or spec.origin is None:
            return None
        found.append((name, spec.origin))
    return found


def catalog_cache(sources: list[tuple[str, str]]) -> Path:
    """The cache file for this set of model modules (another $ZOO_MODEL_MODULES gets its own)."""
    import platformdirs

    setting = json.dumps([str(Path(sys.prefix).resolve()), str(PACKAGE), sources])
    which = hashlib.sha256(setting.encode()).hexdigest()[:16]
    return platformdirs.user_cache_path("zoo") / f"catalog-{which}.json"


def sources_key(sources: list[tuple[str, str]]) -> str:
    """A fingerprint of every file the metadata comes from: the model modules and the zoo's own sources."""
    files = sorted({path for _, path in sources} | {str(p) for p in PACKAGE.rglob("*.py")})
    stamps: list[tuple[str, int | None, int | None]] = []
    for path in files:
        try:
            info = os.stat(path if os.path.isfile(path) else os.path.join(path, "__init__.py"))
            stamps.append((path, info.st_mtime_ns, info.st_size))
        except OSError:  # a source that is gone: its absence is part of the fingerprint
            stamps.append((path, None, None))
    return hashlib.sha256(json.dumps([CATALOG_FORMAT, sys.version, stamps]).encode()).hexdigest()


def _write_quietly(path: Path, data: Any) -> None:
    """Write the cache beside and rename it over; a cache that cannot be written only costs speed.

    Not through zoo.store.atomic, which sits above core, and not synced: a cache torn by a crash does not parse and
    is rebuilt (model_catalog), so no OSError here is anyone's error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps(data))
        os.replace(temp, path)
    except OSError:
        pass


def load_plugin(plugin: str, load: Callable[[], Any]) -> None:
    """Run `load` (import a plugin's module); if it fails, drop the models it registered, log its error in one line
    and remember it for `failed_plugins` and the unknown-model error, instead of raising."""
    before = set(_MODELS)
    try:
        load()
    except Exception as error:  # noqa: BLE001 (a broken plugin, whatever it raises, must not stop the zoo)
        for name in set(_MODELS) - before:
            del _MODELS[name]
        _FAILED_PLUGINS[plugin] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        logging.getLogger("zoo").warning("warning: plugin %s failed to import and is left out: %s",
                                         plugin, _FAILED_PLUGINS[plugin])


def failed_plugins() -> dict[str, str]:
    """The plugins that failed to import (each named with where it was declared) and their errors, one line each."""
    load_models()
    return dict(_FAILED_PLUGINS)
