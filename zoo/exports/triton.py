"""A Triton Inference Server model repository from stored versions and their exported files.

    DIR/MODEL/config.pbtxt     platform, max_batch_size, input and output tensors, version policy
    DIR/MODEL/N/model.onnx     one folder per exported version, numbered as the zoo numbers it
    DIR/MODEL-FORMAT/...       the same for another format Triton loads (TorchScript: INPUT__0 -> OUTPUT__0)

Triton (and KServe, which runs Triton) loads DIR as it is: `tritonserver --model-repository DIR`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.core.errors import Call, IntegrityError, InvalidSettingError, MissingArtifactError, NotExportableError, Setting
from zoo.core.reference import ModelRef
from zoo.core.registry import list_models
from zoo.core.spec import DATATYPES, ModelSpec, TensorSpec
from zoo.exports.formats import FORMATS, TORCH_PLATFORM, TRITON_FORMATS
from zoo.exports.runtimes import artifact_path, exportable_model
from zoo.store.atomic import publish_mode, staged_folder, storage_errors
from zoo.store.versions import WeightsLocation, WeightsStore

# The format whose folder takes the model's own name; every other format's folder is MODEL-FORMAT.
MAIN_FORMAT = "onnx"
DEFAULT_MAX_BATCH = 256
# The spec's dtype names by ONNX's TensorProto names; Triton's data types (model_config.proto) are TYPE_ and the
# v2 name of a TensorSpec's dtype (zoo.core.spec.DATATYPES).
_ONNX_DTYPES = {"FLOAT": "float32", "FLOAT16": "float16", "DOUBLE": "float64", "INT64": "int64", "INT32": "int32",
                "INT8": "int8", "UINT8": "uint8", "BOOL": "bool"}


@dataclass(frozen=True)
class TritonTensor:
    """One tensor of a Triton model config: name, Triton data type, dims without the batch dimension."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def to_pbtxt(self) -> str:
        return (f'  {{\n    name: "{self.name}"\n    data_type: {self.data_type}\n'
                f'    dims: [ {", ".join(map(str, self.dims))} ]\n  }}')


@dataclass(frozen=True)
class TritonModel:
    """One folder of the repository: a model in one format, with the versions it holds."""

    folder: str
    model: str
    format: str
    versions: tuple[int, ...]
    inputs: tuple[TritonTensor, ...]
    outputs: tuple[TritonTensor, ...]
    max_batch_size: int

    @property
    def platform(self) -> str:
        return FORMATS[self.format].platform

    def config_pbtxt(self) -> str:
        """The folder's config.pbtxt, in the text format of Triton's ModelConfig protobuf."""
        fmt = FORMATS[self.format]
        file = fmt.file if fmt.file == fmt.repository_file else f"{fmt.file}, as {fmt.repository_file}"
        tensors = {kind: ",\n".join(t.to_pbtxt() for t in group)
                   for kind, group in (("input", self.inputs), ("output", self.outputs))}
        return (
            f"# Written by `zoo triton-repo` from {self.model} version(s) {', '.join(map(str, self.versions))} "
            f"({file}).\n"
            f'name: "{self.folder}"\n'
            f'platform: "{self.platform}"\n'
            f"max_batch_size: {self.max_batch_size}\n"
            f"version_policy: {{ specific: {{ versions: [ {', '.join(map(str, self.versions))} ] }} }}\n"
            f"input [\n{tensors['input']}\n]\n"
            f"output [\n{tensors['output']}\n]\n"
            "dynamic_batching { }\n"
        )

    def to_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "model": self.model, "format": self.format, "platform": self.platform,
                "versions": list(self.versions), "max_batch_size": self.max_batch_size,
                "inputs": [_tensor_dict(t) for t in self.inputs], "outputs": [_tensor_dict(t) for t in self.outputs]}


def write_triton_repository(
    directory: os.PathLike | str,
    refs: Sequence[ModelRef | str] = (),
    formats: Sequence[str] = (MAIN_FORMAT,),
    *,
    weights_dir: WeightsLocation = None,
    max_batch_size: int = DEFAULT_MAX_BATCH,
) -> dict[str, Any]:
    """Write a Triton model repository at `directory` (absent or empty) from `refs` (MODEL[:VERSION], latest when
    no version; none: every exported version of every model), in each of `formats`. Written whole or not at all."""
    target = Path(directory).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidSettingError(f"{target} is not an empty folder: expected a new or empty folder for the repository")
    if max_batch_size < 1:
        raise InvalidSettingError(f"max batch size must be at least 1, got {max_batch_size}")
    for fmt in formats:
        if fmt not in TRITON_FORMATS:
            raise NotExportableError(
                f"Triton cannot load the {fmt!r} format as it is: expected one of {', '.join(TRITON_FORMATS)}"
            )
    store = WeightsStore.at(weights_dir)
    chosen = _chosen_versions(store, [ModelRef.of(ref) for ref in refs], formats)
    models = []
    files: dict[Path, Path] = {}  # source artifact -> path inside the repository
    for name, versions in chosen.items():
        spec = exportable_model(name)
        for fmt in dict.fromkeys(formats):
            folder = name if fmt == MAIN_FORMAT else f"{name}-{fmt}"
            sources = {
                v: artifact_path(name, v, store.version_dir(name, v), store.manifest(name, v), fmt) for v in versions
            }
            inputs, outputs = _tensors(spec, fmt, sources)
            models.append(TritonModel(folder, name, fmt, tuple(versions), inputs, outputs, max_batch_size))
            inside = FORMATS[fmt].repository_file  # model.onnx for every ONNX file: Triton's default name
            files.update({source: Path(folder) / str(v) / inside for v, source in sources.items()})
    _write_atomically(target, models, files)
    return {"repository": str(target), "models": [m.to_dict() for m in models]}


def _chosen_versions(store: WeightsStore, refs: Sequence[ModelRef], formats: Sequence[str]) -> dict[str, list[int]]:
    """Model name -> sorted versions: the ones named, or every version exported to every format asked for."""
    chosen: dict[str, set[int]] = {}
    if refs:
        for ref in refs:
            exportable_model(ref.name)
            chosen.setdefault(ref.name, set()).add(store.resolve(ref.name, ref.version))
    else:
        for name in list_models():
            if not exportable_model_or_none(name):
                continue
            exported = {
                v
                for v in store.versions(name)
                if all(fmt in store.manifest(name, v).get("artifacts", {}) for fmt in formats)
            }
            if exported:
                chosen[name] = exported
        if not chosen:
            fix = Call("export", "mnist-mlp", (Setting("formats", [formats[0]]),))
            raise MissingArtifactError(
                f"no version in {store.where} is exported to {' and '.join(formats)}; export one first, e.g. `{fix}`",
                settings=(fix,),
            )
    return {name: sorted(versions) for name, versions in chosen.items()}


def exportable_model_or_none(name: str) -> ModelSpec | None:
    """The spec of `name` if it runs on inputs, else None."""
    try:
        return exportable_model(name)
    except NotExportableError:
        return None


def _tensors(
    spec: ModelSpec, fmt: str, sources: dict[int, Path]
) -> tuple[tuple[TritonTensor, ...], tuple[TritonTensor, ...]]:
    """The input and output tensors Triton sees: TorchScript by position (INPUT__0, as Triton's libtorch backend
    names them), ONNX as its graph says, checked against the spec and the same in every version."""
    if FORMATS[fmt].platform == TORCH_PLATFORM:
        interface = spec.required_interface()
        return (_from_spec("INPUT__0", interface.input),), (_from_spec("OUTPUT__0", interface.output),)
    found = {version: _onnx_tensors(path) for version, path in sources.items()}
    first = next(iter(found.values()))
    for version, tensors in found.items():
        if tensors != first:
            raise IntegrityError(
                f"{spec.name} version {version}'s {FORMATS[fmt].file} has tensors {tensors}, other "
                f"versions {first}: one Triton model needs the same tensors in every version"
            )
    inputs, outputs = first
    expected = ([spec.required_interface().input.name], [spec.required_interface().output.name])
    if ([t.name for t in inputs], [t.name for t in outputs]) != expected:
        raise IntegrityError(
            f"{next(iter(sources.values()))} takes {[t.name for t in inputs]} -> "
            f"{[t.name for t in outputs]}: expected {expected[0]} -> {expected[1]} as {spec.name} declares"
        )
    return inputs, outputs


def _from_spec(name: str, tensor: TensorSpec) -> TritonTensor:
    return TritonTensor(name, _triton_type(tensor.dtype), tuple(tensor.features))


def _triton_type(dtype: str) -> str:
    """Triton's data type for a spec's dtype name (TYPE_FP32 for float32)."""
    return f"TYPE_{DATATYPES[dtype]}"


def _onnx_tensors(path: Path) -> tuple[tuple[TritonTensor, ...], tuple[TritonTensor, ...]]:
    """The graph's inputs and outputs; the first dimension must be dynamic (Triton's batch dimension)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    groups = []
    for values in (graph.input, graph.output):
        tensors = []
        for value in values:
            kind = value.type.tensor_type
            dims = list(kind.shape.dim)
            if not dims or not dims[0].dim_param:
                fix = Call("export")
                raise IntegrityError(
                    f"{path}: {value.name!r} has no dynamic batch dimension; expected [N, ...] (re-export it with "
                    f"`{fix}`)",
                    settings=(fix,),
                )
            tensors.append(
                TritonTensor(
                    value.name,
                    _triton_type(_ONNX_DTYPES[onnx.TensorProto.DataType.Name(kind.elem_type)]),
                    tuple(d.dim_value for d in dims[1:]),
                )
            )
        groups.append(tuple(tensors))
    return groups[0], groups[1]


def _write_atomically(target: Path, models: list[TritonModel], files: dict[Path, Path]) -> None:
    """Build the repository in a staging folder beside `target`, then rename it into place."""
    with storage_errors(f"write the Triton repository {target}"):
        target.parent.mkdir(parents=True, exist_ok=True)
        # rename() onto an empty folder replaces it; onto a non-empty one it fails, so nothing is overwritten.
        with staged_folder(target) as staging:
            for model in models:
                (staging / model.folder).mkdir()
                (staging / model.folder / "config.pbtxt").write_text(model.config_pbtxt())
            for source, inside in files.items():
                (staging / inside).parent.mkdir(exist_ok=True)
                shutil.copyfile(source, staging / inside)
            for path in staging.rglob("*"):
                publish_mode(path)


def _tensor_dict(tensor: TritonTensor) -> dict[str, Any]:
    return {"name": tensor.name, "data_type": tensor.data_type, "dims": list(tensor.dims)}
