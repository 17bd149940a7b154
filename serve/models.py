"""The versions a server answers for: which to serve, opened once per process and warmed up before use."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from zoo.errors import MissingArtifactError, UnknownModelError, UnknownVersionError
from zoo.registry import get_model, list_models
from zoo.runtimes import Runtime, exportable_model, open_runtime
from zoo.store import WeightsStore

log = logging.getLogger("zoo.serve")


def plan_versions(models: Iterable[str] | None, weights_dir: str | None, backend: str) -> dict[str, list[int]]:
    """Every stored version of each model that `backend` can run, checked without loading anything.

    `models` None means every registered model that runs on inputs; models without a runnable version are
    then left out with a log line. A model named in `models` must be servable. Nothing to serve at all raises:
    for want of exports, MissingArtifactError naming each export command; else UnknownVersionError.
    """
    store = WeightsStore(weights_dir)
    named = models is not None
    names = list(models) if named else [name for name in list_models() if get_model(name).exportable]
    plan: dict[str, list[int]] = {}
    unexported: list[str] = []
    for name in names:
        exportable_model(name)  # an unknown or input-less model fails here, before any worker starts
        versions = store.versions(name)
        if backend != "torch" and versions:
            runnable = [v for v in versions if backend in store.manifest(name, v).get("artifacts", {})]
            if not runnable:
                unexported.append(f"{name}:{versions[-1]}")
            elif runnable != versions:
                skipped = ", ".join(str(v) for v in versions if v not in runnable)
                log.warning("%s: not serving version(s) %s on %s: no %s export yet (zoo export %s:%s --format %s)",
                            name, skipped, backend, backend, name, versions[-1], backend)
            versions = runnable
        if versions:
            plan[name] = versions
        elif named and not unexported:
            raise UnknownVersionError(f"cannot serve {name}: no trained versions in {store.where} (zoo train {name})")
    if unexported and (named or not plan):
        commands = ", ".join(f"`zoo export {ref} --format {backend}`" for ref in unexported)
        raise MissingArtifactError(f"no {backend} export to serve for {', '.join(unexported)}; create it with {commands}")
    for ref in unexported:
        log.warning("not serving %s on %s: no %s export (zoo export %s --format %s)", ref, backend, backend, ref, backend)
    if not plan:
        raise UnknownVersionError(
            f"nothing to serve: no trained versions of {', '.join(names)} in {store.where}; "
            f"train one (zoo train mnist-mlp) or pass --weights-dir"
        )
    return plan


@dataclass
class ServedModels:
    """Open runtimes by model name and version; `get` answers the latest version unless one is pinned."""

    backend: str
    runtimes: dict[str, dict[int, Runtime]] = field(default_factory=dict)
    ready: bool = False

    @classmethod
    def open(cls, plan: dict[str, list[int]], backend: str, weights_dir: str | None,
             threads: int | None = None) -> ServedModels:
        """Open every planned version and run one warm-up inference through each, then mark ready."""
        served = cls(backend)
        for name, versions in plan.items():
            served.runtimes[name] = {v: open_runtime(f"{name}:{v}", backend, weights_dir, threads=threads)
                                     for v in versions}
        for runtime in served.all():
            example = np.zeros([1, *runtime.spec.input.features], dtype=np.float32)
            runtime.run(example)
        served.ready = True
        return served

    def all(self) -> list[Runtime]:
        return [runtime for versions in self.runtimes.values() for runtime in versions.values()]

    def names(self) -> list[str]:
        return list(self.runtimes)

    def get(self, name: str, version: str | None = None) -> Runtime:
        """The runtime for `name` at `version` (a path segment; None or "" means latest); 404-kind errors otherwise."""
        versions = self.runtimes.get(name)
        if versions is None:
            served = ", ".join(self.runtimes) or "none"
            raise UnknownModelError(f"unknown model {name!r}: this server serves {served}")
        if not version:
            return versions[max(versions)]
        if not version.isdigit() or int(version) not in versions:
            have = ", ".join(map(str, versions))
            raise UnknownVersionError(f"{name} has no version {version!r} on this server; versions served: {have}")
        return versions[int(version)]


def served_models() -> ServedModels:
    """The ServedModels of the app handling the current request."""
    from flask import current_app

    return current_app.extensions["zoo.models"]
