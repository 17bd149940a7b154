"""The served-model repository: which stored versions to serve (the version policy) and on which runtime, opened
and warmed up before use, and refreshed while serving (Triton's poll mode) so new versions appear and removed ones
go without a restart. Protocol-neutral: no Flask here (serve/context.py holds the app's accessors), so HTTP and
gRPC front ends share one repository, as KServe's model_repository.py stands apart from its protocol/."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from zoo.catalog import ModelDescription, describe
from zoo.core.errors import (
    Call,
    InvalidSettingError,
    MissingArtifactError,
    Setting,
    UnknownModelError,
    UnknownVersionError,
    ZooError,
)
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model, list_models
from zoo.exports.runtimes import Runtime, check_backend, exportable_model, open_stored
from zoo.serve.checks import interface
from zoo.store.versions import WeightsStore, is_version_number

# The default backend: ONNX Runtime for every version that has an ONNX export (measured fastest at every batch
# size, benchmarks/README.md), PyTorch for one that has none.
AUTO = "auto"
FASTEST = "onnx"
log = logging.getLogger("zoo.serve")


def version_number(text: str) -> int | None:
    """`text` as a version number when it is one written canonically (`1`, `12`), else None (`01`, `1.0`, `١`)."""
    return int(text) if is_version_number(text) else None


@dataclass(frozen=True)
class VersionPolicy:
    """Which stored versions to serve, as Triton's version_policy: all, the latest N, or specific numbers."""

    latest: int | None = None
    specific: tuple[int, ...] = ()

    @classmethod
    def parse(cls, text: str) -> VersionPolicy:
        """`all`, `latest:N` or a comma-separated list of version numbers, e.g. `1,3`."""
        text = text.strip()
        if text == "all":
            return cls()
        if text.startswith("latest:") and (latest := version_number(text[7:])) is not None:
            return cls(latest=latest)
        numbers = [version_number(part.strip()) for part in text.split(",")]
        if all(number is not None for number in numbers):
            return cls(specific=tuple(sorted({number for number in numbers if number is not None})))
        fix = Setting("versions")
        raise InvalidSettingError(
            f"{fix} expects all, latest:N (N >= 1) or version numbers like 1,3; got {text!r}", settings=(fix,)
        )

    def choose(self, versions: list[int]) -> list[int]:
        """The versions to serve out of `versions` (ascending)."""
        if self.latest is not None:
            return versions[-self.latest :]
        if self.specific:
            return [v for v in versions if v in self.specific]
        return versions

    def __str__(self) -> str:
        return f"latest:{self.latest}" if self.latest else ",".join(map(str, self.specific)) or "all"


ALL_VERSIONS = VersionPolicy()


def plan_versions(
    models: Iterable[str] | None, store: WeightsStore, backend: str = AUTO, policy: VersionPolicy = ALL_VERSIONS
) -> dict[str, dict[int, str]]:
    """Each model's versions to serve under `policy`, with the backend each answers on, checked without loading.

    `models` None means every registered model that runs on inputs; models without a servable version are
    then left out with a log line. A model named in `models` must be servable. Nothing to serve at all raises:
    for want of exports, MissingArtifactError naming each export command; else UnknownVersionError.
    """
    if backend != AUTO:
        check_backend(backend)
    named = models is not None
    names = list(models) if models is not None else [name for name in list_models() if get_model(name).exportable]
    plan: dict[str, dict[int, str]] = {}
    unexported: list[str] = []
    for name in names:
        exportable_model(name)  # an unknown or input-less model fails here, before any worker starts
        versions = policy.choose(store.versions(name))
        exports = {v: _exports(store, name, v) for v in versions} if backend != "torch" else {}
        if backend == AUTO:
            chosen = {v: FASTEST if FASTEST in exports[v] else "torch" for v in versions}
        elif backend == "torch":
            chosen = dict.fromkeys(versions, "torch")
        else:
            chosen = {v: backend for v in versions if exports[v] is UNREADABLE or backend in exports[v]}
            if versions and not chosen:
                unexported.append(str(ModelRef(name, versions[-1])))
            elif len(chosen) != len(versions):
                skipped = ", ".join(str(v) for v in versions if v not in chosen)
                log.warning(
                    "%s: not serving version(s) %s on %s: no %s export yet (zoo export %s:%s --format %s)",
                    name,
                    skipped,
                    backend,
                    backend,
                    name,
                    versions[-1],
                    backend,
                )
        if chosen:
            plan[name] = chosen
        elif named and not unexported:
            fix = Call("train", name)
            raise UnknownVersionError(
                f"cannot serve {name}: no trained versions in {store.where} under version policy {policy} ({fix})",
                settings=(fix,),
            )
    if unexported and (named or not plan):
        fixes = tuple(Call("export", ref, (Setting("formats", [backend]),)) for ref in unexported)
        raise MissingArtifactError(
            f"no {backend} export to serve for {', '.join(unexported)}; create it with "
            f"{', '.join(f'`{fix}`' for fix in fixes)}",
            settings=fixes,
        )
    for ref in unexported:
        log.warning(
            "not serving %s on %s: no %s export (zoo export %s --format %s)", ref, backend, backend, ref, backend
        )
    if not plan:
        train, root = Call("train", "mnist-mlp"), Setting("weights_dir")
        raise UnknownVersionError(
            f"nothing to serve: no trained versions of {', '.join(names)} in {store.where}; "
            f"train one ({train}) or pass {root}",
            settings=(train, root),
        )
    return plan


UNREADABLE: dict[str, Any] = {}  # the exports of a version whose manifest cannot be read


def _exports(store: WeightsStore, name: str, version: int) -> dict[str, Any]:
    """A version's exports by format; UNREADABLE when its manifest is damaged, so that the version stays in the
    plan and opening it, not planning, says why it is left out (one damaged version never stops a server)."""
    try:
        return store.manifest(name, version).get("artifacts", {})
    except ZooError:
        return UNREADABLE


def warmed(runtime: Runtime) -> Runtime:
    """`runtime` after one inference on zeros, so the first request pays no start-up cost."""
    tensor = interface(runtime.spec).input
    runtime.run(np.zeros([1, *tensor.features], dtype=tensor.dtype))
    return runtime


class ServedModels:
    """Open runtimes by model name and version; `get` answers the latest version unless one is pinned.

    `runtimes` is replaced whole on each refresh, never changed in place, so a request that has read it
    keeps a consistent view while new versions are opened beside it. A version that fails to open (a damaged
    file, a hand-edited manifest) is left out with one log line and kept in `failed`, at start as on reload:
    one damaged version never takes the server down.
    """

    def __init__(
        self,
        models: Iterable[str] | None,
        store: WeightsStore,
        backend: str = AUTO,
        policy: VersionPolicy = ALL_VERSIONS,
        threads: int | None = None,
    ) -> None:
        self.models = None if models is None else tuple(models)
        self.store, self.backend, self.policy, self.threads = store, backend, policy, threads
        self.runtimes: dict[str, dict[int, Runtime]] = {}
        self.failed: dict[tuple[str, int], str] = {}  # (model, version) -> why it is not served, for the log
        self.opened = False
        self._refreshing = threading.Lock()

    @property
    def ready(self) -> bool:
        """Whether every planned version has been tried and at least one is served."""
        return self.opened and bool(self.runtimes)

    def open(self) -> ServedModels:
        """Open and warm up every planned version, leaving out (and logging) any that fails, then mark ready."""
        plan = plan_versions(self.models, self.store, self.backend, self.policy)
        self.refresh(plan)
        for name, versions in self.runtimes.items():
            log.info("serving %s version(s) %s", name, ", ".join(f"{v} on {r.backend}" for v, r in versions.items()))
        self.opened = True
        return self

    def _open(self, name: str, version: int, backend: str) -> Runtime | None:
        """The warmed runtime, or None with one log line (the first time this version fails this way)."""
        try:
            runtime = warmed(open_stored(ModelRef(name, version), self.store, backend, threads=self.threads))
        except Exception as error:  # a damaged file may fail inside onnxruntime or torch, not only in the zoo's checks
            reason = f"{type(error).__name__}: {error}"
            if self.failed.get((name, version)) != reason:
                log.error("not serving %s:%s on %s: %s", name, version, backend, reason)
            self.failed[(name, version)] = reason
            return None
        self.failed.pop((name, version), None)
        return runtime

    def refresh(self, plan: dict[str, dict[int, str]] | None = None) -> tuple[list[str], list[str]]:
        """Serve what the store holds now: open new versions (and ones whose backend changed, say by a new
        export), drop removed ones. Returns (added, removed) as MODEL:V; a version that fails to open is
        logged and left out (its older runtime kept, if it had one), and the rest is served as before."""
        with self._refreshing:
            if plan is None:
                try:
                    plan = plan_versions(self.models, self.store, self.backend, self.policy)
                except ZooError as error:
                    log.error("reload: keeping what is served: %s", error)
                    raise
            current = self.runtimes
            fresh: dict[str, dict[int, Runtime]] = {}
            added: list[str] = []
            for name, versions in plan.items():
                fresh[name] = {}
                for version, backend in versions.items():
                    old = current.get(name, {}).get(version)
                    if old is not None and old.backend == backend:
                        fresh[name][version] = old
                        continue
                    runtime = self._open(name, version, backend)
                    if runtime is not None:
                        fresh[name][version] = runtime
                        added.append(str(ModelRef(name, version)))
                    elif old is not None:
                        fresh[name][version] = old
                if not fresh[name]:
                    del fresh[name]
            planned = {(name, v) for name, versions in plan.items() for v in versions}
            self.failed = {key: reason for key, reason in self.failed.items() if key in planned}
            removed = [
                str(ModelRef(name, v)) for name, versions in current.items() for v in versions
                if v not in fresh.get(name, {})
            ]
            self.runtimes = fresh
        if self.opened and (added or removed):
            log.info(
                "reload: now serving %s (added %s; removed %s)",
                self.describe(),
                ", ".join(added) or "none",
                ", ".join(removed) or "none",
            )
        return added, removed

    def poll(self, seconds: float, on_reload: Callable[[str], None] | None = None) -> threading.Thread:
        """Refresh every `seconds` in a daemon thread; `on_reload(result)` hears "changed", "unchanged" or "failed"."""

        def loop() -> None:
            while True:
                time.sleep(seconds)
                try:
                    added, removed = self.refresh()
                    result = "changed" if added or removed else "unchanged"
                except ZooError:
                    result = "failed"
                except Exception:  # a reload must never take the worker down
                    log.exception("reload failed")
                    result = "failed"
                if on_reload is not None:
                    on_reload(result)

        thread = threading.Thread(target=loop, name="zoo-model-poll", daemon=True)
        thread.start()
        return thread

    def describe(self) -> str:
        """What is served, for the log: `name v, v; name v`."""
        return "; ".join(f"{name} {', '.join(map(str, versions))}" for name, versions in self.runtimes.items())

    def all(self) -> list[Runtime]:
        """Every served runtime, of every model and version."""
        return [runtime for versions in self.runtimes.values() for runtime in versions.values()]

    def names(self) -> list[str]:
        """The served models' names."""
        return list(self.runtimes)

    def description(self, name: str) -> ModelDescription:
        """`name` as every listing describes it (zoo.catalog.describe), with its served versions."""
        return describe(name, [runtime.manifest for runtime in self.versions(name).values()])

    def versions(self, name: str) -> dict[int, Runtime]:
        """The served versions of `name` (the 404-kind error when it is not served)."""
        runtimes = self.runtimes
        versions = runtimes.get(name)
        if versions is None:
            served = ", ".join(runtimes) or "none"
            if any(model == name for model, _ in self.failed):
                raise UnknownModelError(
                    f"model {name!r} failed to open on this server (its log says why); this server serves {served}"
                )
            raise UnknownModelError(f"unknown model {name[:100]!r}: this server serves {served}")
        return versions

    def is_failed(self, name: str, version: str) -> bool:
        """Whether `version` of `name` is stored and planned but failed to open."""
        number = version_number(version)
        return number is not None and (name, number) in self.failed

    def get(self, name: str, version: str | None = None) -> Runtime:
        """The runtime for `name` at `version` (a path segment; None means latest); 404-kind errors otherwise."""
        versions = self.versions(name)
        if version is None:
            return versions[max(versions)]
        # Only a canonical number names a version: "01", "1.0" or "١" are not version 1.
        number = version_number(version)
        if number is None or number not in versions:
            have = ", ".join(map(str, versions))
            if (name, number) in self.failed:
                raise UnknownVersionError(
                    f"{name} version {number} failed to open on this server (its log says why); versions served: {have}"
                )
            raise UnknownVersionError(f"{name} has no version {version[:40]!r} on this server; versions served: {have}")
        return versions[number]

