"""Model cards: a README.md in the model-hub convention with the version's figures beside it, in its own folder.

`zoo train` draws one into each new version before it is published (`publish_card`: a figure that fails is
reported in the manifest, never at the cost of the version); `draw_card` draws or redraws a stored version's
(every figure or nothing); `stored_card` reads one back for the server.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cards.figures import Drawing, card_figures, draw_figure, recipe_changes, recipe_label
from zoo.core.data import DataContext, resolve_data_dir
from zoo.core.devices import resolve_device
from zoo.core.errors import DrawingError, MissingCardError, ZooError
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.core.spec import InputForm, Interface, ModelSpec
from zoo.exports.formats import FORMATS
from zoo.store.atomic import CARD_STAGING_PREFIX, replace_file, staging_folder, storage_errors
from zoo.store.loading import LoadedModel, load_stored
from zoo.store.manifest import CardRecord, Manifest, version_file
from zoo.store.versions import WeightsLocation, WeightsStore

CARD_FILE = "README.md"
# The zoo declares no license of its own, so the card says "other" (the model hub's value for that) and why.
LICENSE = "other"


def publish_card(folder: Path, drawing: Drawing) -> CardRecord:
    """Draw the card and figures of a version being published into `folder`; whatever fails is recorded, not raised."""
    started = time.perf_counter()
    figures, failures = [], []
    for figure in card_figures(drawing.spec):
        try:
            draw_figure(figure, drawing, folder / figure.file)
            figures.append(figure.file)
        except Exception as error:  # noqa: BLE001 (a figure that fails must never cost the trained version)
            failures.append(f"{figure.file}: {type(error).__name__}: {_first_line(error)}")
    record: CardRecord = {"file": CARD_FILE, "figures": figures, "failures": failures, "drawing_seconds": 0.0}
    try:
        write_text(folder / CARD_FILE, card_text(drawing, record))
    except Exception as error:  # noqa: BLE001 (as above)
        (folder / CARD_FILE).unlink(missing_ok=True)
        record["file"] = None
        failures.append(f"{CARD_FILE}: {type(error).__name__}: {_first_line(error)}")
    record["drawing_seconds"] = round(time.perf_counter() - started, 3)
    return record


def rewritten_card(loaded: LoadedModel, manifest: Manifest, context: DataContext) -> dict[Path, str]:
    """A stored version's card text redrawn from `manifest` (its export table as it will be), by its file; nothing
    for a version drawn without a card."""
    record = loaded.manifest.get("card")
    file = record.get("file") if record else None
    if not record or not file:
        return {}
    text = card_text(Drawing(loaded.spec, loaded.recipe, manifest, loaded.model, context), record)
    return {loaded.stored.path / file: text}


@dataclass(frozen=True)
class CardResult:
    """A card drawn into a stored version: the version, its folder and the card's record in its manifest."""

    model: str
    version: int
    folder: Path
    file: str | None
    figures: tuple[str, ...]
    failures: tuple[str, ...]
    drawing_seconds: float

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as `zoo card --json` prints it."""
        return {"model": self.model, "version": self.version, "folder": str(self.folder), "file": self.file,
                "figures": list(self.figures), "failures": list(self.failures),
                "drawing_seconds": self.drawing_seconds}


def draw_card(ref: ModelRef | str, *, data_dir: str | None = None, weights_dir: WeightsLocation = None,
              device: str = "cpu") -> CardResult:
    """Write or rewrite the card and figures of a stored version: every figure is drawn before any file moves, so a
    failure changes nothing. Released versions are read-only (name their folder with `weights_dir` to redraw them)."""
    store = WeightsStore.at(weights_dir)
    loaded = load_stored(ModelRef.of(ref), store, device)
    name = loaded.spec.name
    store.check_writable(name, loaded.version)
    drawing = Drawing(loaded.spec, loaded.recipe, loaded.manifest, loaded.model,
                      DataContext(resolve_data_dir(data_dir), resolve_device(device)))
    folder = loaded.stored.path
    started = time.perf_counter()
    with storage_errors(f"write the card of {loaded.ref}", folder), \
            staging_folder(folder, CARD_STAGING_PREFIX) as staging:
        figures = []
        for figure in card_figures(drawing.spec):
            try:
                draw_figure(figure, drawing, staging / figure.file)
            except ZooError:
                raise
            except Exception as error:
                raise DrawingError(
                    f"could not draw {figure.file} for {loaded.ref}: "
                    f"{type(error).__name__}: {_first_line(error)}"
                ) from error
            figures.append(figure.file)
        record: CardRecord = {"file": CARD_FILE, "figures": figures, "failures": [], "drawing_seconds": 0.0}
        write_text(staging / CARD_FILE, card_text(drawing, record))
        record["drawing_seconds"] = round(time.perf_counter() - started, 3)
        staged = {staging / file: folder / file for file in [*figures, CARD_FILE]}
        manifest = store.commit(name, loaded.version, staged, lambda m: m.__setitem__("card", record))
    record = manifest["card"]
    return CardResult(name, loaded.version, folder, record["file"], tuple(record["figures"]),
                      tuple(record["failures"]), record["drawing_seconds"])


@dataclass(frozen=True)
class StoredCard:
    """A stored version's card as the server shows it: the markdown, its figures and the model's other versions."""

    name: str
    version: int
    folder: Path
    markdown: str
    figures: tuple[str, ...]
    versions: tuple[int, ...]


def stored_card(name: str, version: int | None, *, weights_dir: WeightsLocation = None) -> StoredCard:
    """The card of `name` at `version` (latest when None); MissingCardError when that version has none."""
    get_model(name)
    store = WeightsStore.at(weights_dir)
    version = store.resolve(name, version)
    folder = store.version_dir(name, version)
    record: CardRecord | dict[str, Any] = store.manifest(name, version).get("card") or {}
    path = version_file(folder, record.get("file") or CARD_FILE, "card.file")
    if not record.get("file") or not path.is_file():
        raise MissingCardError(
            f"{name}:{version} has no model card in {folder}; draw it with `zoo card {name}:{version}`"
        )
    # Checked here so that whoever serves a figure by its name (the server's card pages) serves a file of the folder.
    figures = tuple(
        version_file(folder, figure, f"card.figures[{index}]").name
        for index, figure in enumerate(record.get("figures", []))
    )
    return StoredCard(name, version, folder, path.read_text(encoding="utf-8"), figures, tuple(store.versions(name)))


def write_text(path: Path, text: str) -> None:
    """Write `text` (UTF-8) as `path`, whole or not at all."""
    replace_file(path, lambda handle: handle.write(text.encode("utf-8")))


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0]


# --- the card's text


def card_text(drawing: Drawing, record: CardRecord) -> str:
    """The whole README.md: YAML front matter, then what the model is, its recipe, results, use and limits."""
    spec, manifest = drawing.spec, drawing.manifest
    sections = [
        "---\n" + "\n".join(yaml_lines(front_matter(spec, manifest))) + "\n---",
        _about(drawing),
        _recipe(drawing),
        _results(drawing, record),
        *([export_table(manifest)] if manifest.get("artifacts") else []),
        _usage(spec, manifest),
        _limits(spec, manifest),
    ]
    return "\n\n".join(sections) + "\n"


def scalar_metrics(manifest: Manifest) -> dict[str, float]:
    """The version's metrics that are single numbers (lists such as himmelblau's points are left out)."""
    return {
        key: value
        for key, value in manifest.get("metrics", {}).items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    }


def front_matter(spec: ModelSpec, manifest: Manifest) -> dict[str, Any]:
    """The model-hub metadata: name, task, data set, license, and the metrics as a model-index."""
    metrics = scalar_metrics(manifest)
    return {
        "license": LICENSE,
        "license_name": "unspecified",
        "library_name": "pytorch",
        "tags": ["zoo", "pytorch", spec.task],
        "datasets": [spec.dataset],
        "metrics": list(metrics),
        "model-index": [
            {
                "name": f"{spec.name}:{manifest['version']}",
                "results": [
                    {
                        "task": {"type": spec.task, "name": spec.summary},
                        "dataset": {
                            "name": spec.dataset,
                            "type": spec.dataset,
                            "split": manifest.get("data", {}).get("description", ""),
                        },
                        "metrics": [{"type": key, "value": value, "name": key} for key, value in metrics.items()],
                    }
                ],
            }
        ],
    }


def yaml_lines(value: Any, indent: int = 0) -> list[str]:
    """`value` (dicts, lists, strings, numbers) as block-style YAML; strings are JSON-quoted, which YAML reads."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines += yaml_lines(item, indent + (0 if isinstance(item, list) else 1))
            else:
                lines.append(f"{pad}{key}: {yaml_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, (dict, list)) and item:
                inner = yaml_lines(item, indent + 1)
                lines += [f"{pad}- {inner[0].lstrip()}", *inner[1:]]
            else:
                lines.append(f"{pad}- {yaml_scalar(item)}")
    return lines


def yaml_scalar(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        # YAML 1.1 readers want a dot in the mantissa of 1e-05.
        mantissa, e, exponent = text.partition("e")
        return f"{mantissa}{'' if '.' in mantissa else '.0'}{e}{exponent}" if e else text
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (dict, list)):
        return "{}" if isinstance(value, dict) else "[]"
    return json.dumps(str(value), ensure_ascii=False)


def _ref(manifest: Manifest) -> str:
    return f"{manifest['model']}:{manifest['version']}"


def _about(drawing: Drawing) -> str:
    spec, manifest = drawing.spec, drawing.manifest
    parameters = manifest.get("parameters")
    lines = [
        f"# {spec.name}, version {manifest['version']}",
        "",
        f"{spec.summary}. From document {spec.source}. Trained with the {recipe_label(spec, manifest)}"
        f" on {spec.dataset}.",
        "",
        f"- task: {spec.task}",
        f"- parameters: {parameters:,}" if isinstance(parameters, int) else "- parameters: unknown",
    ]
    if spec.interface is not None:
        tensors = spec.interface.input, spec.interface.output
        lines += [
            f"- input: `{tensors[0].name}` {_shape(tensors[0].shape)} {tensors[0].dtype} -> "
            f"output: `{tensors[1].name}` {_shape(tensors[1].shape)}",
            f"- preprocessing: {spec.preprocessing}",
        ]
    else:
        lines.append("- input: none; the module's parameters are the answer")
    lines += ["", "```", str(drawing.model), "```"]
    return "\n".join(lines)


def _recipe(drawing: Drawing) -> str:
    manifest = drawing.manifest
    record = manifest.get("recipe", {})
    changed = recipe_changes(drawing.spec, manifest)
    rows = [
        f"| `{key}` | `{json.dumps(value)}` |{' changed' if key in changed else ''} |"
        for key, value in record.get("params", {}).items()
    ]
    data = manifest.get("data", {})
    return "\n".join(
        [
            "## Training recipe",
            "",
            f"The `{record.get('name')}` recipe (`zoo info {manifest['model']}` shows every recipe); "
            "values marked *changed* were overridden on the command line.",
            "",
            "| hyperparameter | value | |",
            "| --- | --- | --- |",
            *rows,
            "",
            f"- data: {data.get('description', 'unknown')} (fingerprint `{data.get('fingerprint', '-')}`)",
            f"- trained on {manifest.get('device', '?')} with torch {manifest.get('torch', '?')} in "
            f"{manifest.get('training_seconds', float('nan')):.1f} s, {manifest.get('created', '?')}",
            f"- weights: `{manifest['weights']['file']}`, sha256 `{manifest['weights']['sha256']}`",
            *(
                [
                    f"- fine-tuned from `{manifest['parent']['ref']}` (its weights' sha256 "
                    f"`{manifest['parent']['sha256']}`), "
                    "not from a fresh initialisation"
                ]
                if "parent" in manifest
                else []
            ),
        ]
    )


def _results(drawing: Drawing, record: CardRecord) -> str:
    spec, manifest = drawing.spec, drawing.manifest
    rows = [f"| {key} | {_number(value)} |" for key, value in manifest.get("metrics", {}).items()]
    lines = ["## Results", "", "| metric | this version |", "| --- | --- |", *rows, ""]
    if spec.document_result:
        lines.append(f"The document's own result: {spec.document_result}.")
    lines += [f"Check it again with `zoo evaluate {_ref(manifest)}`.", ""]
    captions = {figure.file: figure.caption for figure in card_figures(spec)}
    for file in record["figures"]:
        lines += [f"### {captions.get(file, file)}", "", f"![{captions.get(file, file)}]({file})", ""]
    if record["failures"]:
        lines.append("Not drawn: " + "; ".join(record["failures"]) + f". `zoo card {_ref(manifest)}` draws them again.")
    return "\n".join(lines).rstrip()


def export_table(manifest: Manifest) -> str:
    """The card's section on exported files: each one's size, its score on the task and its largest difference
    from eager, as the export's verification measured them."""
    artifacts = manifest.get("artifacts", {})
    float32_bytes = artifacts.get("onnx", {}).get("bytes")
    rows = []
    for fmt, entry in artifacts.items():
        check = entry.get("verification") or {}
        size = f"{entry.get('bytes', 0) / 1024:,.0f} KiB"
        if float32_bytes and fmt != "onnx" and fmt in FORMATS and FORMATS[fmt].derived_from == "onnx":
            size += f" ({entry['bytes'] / float32_bytes:.2f}x float32's)"
        if "accuracy" in check:
            score = (
                f"{check['accuracy']:.2f}% accuracy, {check['accuracy_drop']:.2f} points below float32's "
                f"(at most {check['max_accuracy_drop']:g} allowed)"
            )
        elif "relative_error" in check:
            score = (
                f"outputs {check['relative_error']:.2g} from float32's, relative RMS "
                f"(at most {check['max_relative_error']:g} allowed)"
            )
        elif check:
            score = "as eager (outputs within " + f"{check['tolerance']:g})"
        else:
            score = "not verified"
        diff = f"{check['max_abs_diff']:.3g}" if "max_abs_diff" in check else "-"
        rows.append(f"| {fmt} | `{entry.get('file')}` | {size} | {score} | {diff} |")
    return "\n".join(
        [
            "## Exported files",
            "",
            "Beside the weights, each verified before it was kept: lossless files against PyTorch eager, int8 and "
            "float16 "
            "on the test split against the float32 ONNX file.",
            "",
            "| format | file | size | on the task | max abs difference from eager |",
            "| --- | --- | --- | --- | --- |",
            *rows,
        ]
    )


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return f"`{json.dumps(value)}`" if isinstance(value, (list, dict)) else str(value)


def _usage(spec: ModelSpec, manifest: Manifest) -> str:
    ref, name, version = _ref(manifest), spec.name, manifest["version"]
    lines = ["## How to use", "", "Command line:", "", "```bash", f"zoo evaluate {ref}"]
    if spec.interface is None:
        return "\n".join(lines + _usage_without_inputs(name, version))
    input_name = spec.required_interface().input.name
    lines += [
        f"zoo export {ref}    # ONNX beside the weights (--format all for every format)",
        "zoo serve    # HTTP (a drawing page at / for digit models); SERVER below is the address it listens on",
        "```",
        "",
    ]
    imports, python, http, example = _usage_examples(spec.interface, name, version)
    onnx_file = FORMATS["onnx"].file
    lines += [
        "Python:",
        "",
        "```python",
        *imports,
        "",
        *python,
        "```",
        "",
        "HTTP (`zoo serve`):",
        "",
        "```bash",
        http,
        "```",
        "",
        (
            f"ONNX Runtime, with the `{onnx_file}` beside the weights"
            if "onnx" in manifest.get("artifacts", {})
            else f"ONNX Runtime, once `zoo export {ref}` has written `{onnx_file}` beside the weights"
        )
        + " (the preprocessing is inside the graph):",
        "",
        "```python",
        "import numpy as np, onnxruntime",
        "",
        "rng = np.random.default_rng(0)",
        f'session = onnxruntime.InferenceSession("{onnx_file}")',
        f"{input_name} = {example}",
        f'print(session.run(None, {{"{input_name}": {input_name}}})[0])',
        "```",
    ]
    return "\n".join(lines)


def _usage_without_inputs(name: str, version: int) -> list[str]:
    return [
        "```",
        "",
        "Python: the answer is the module's parameters.",
        "",
        "```python",
        "import zoo",
        "",
        f"model = zoo.load_model({name!r}, {version}).model",
        "print({key: value.tolist() for key, value in model.named_parameters()})",
        "```",
        "",
        "It takes no inputs, so it is neither exported nor served.",
    ]


def _usage_examples(interface: Interface, name: str, version: int) -> tuple[list[str], list[str], str, str]:
    """The Python imports and lines, the HTTP request and an ONNX Runtime input that show a model on inputs."""
    predict_url = f'"$SERVER/v1/models/{name}/versions/{version}/predict"'
    if interface.form is InputForm.DIGITS:
        python = [
            f"model = zoo.load_model({name!r}, {version})",
            "with torch.no_grad():",
            '    logits = model.model(model.preprocess(Image.open("digit.png")))',
            "print(model.categories[logits.argmax(1).item()])",
        ]
        http = f"curl -s -X POST {predict_url} -H 'Content-Type: image/png' --data-binary @digit.png"
        shape = ", ".join(map(str, interface.input.features))
        example = f"rng.random((1, {shape}), dtype=np.float32)  # raw pixels in [0, 1]"
        return ["import torch, zoo", "from PIL import Image"], python, http, example
    input_name, features = interface.input.name, interface.input.features[0]
    values = list(range(1, features + 1)) if features <= 4 else None
    body = json.dumps({input_name: [values]}) if values else f'{{"{input_name}": [[{features} numbers]]}}'
    python = [
        f"model = zoo.load_model({name!r}, {version})",
        "with torch.no_grad():",
        f"    print(model.model(torch.tensor([{values}], dtype=torch.float32)))"
        if values
        else f"    print(model.model(torch.randn(1, {features})))",
    ]
    http = f"curl -s -X POST {predict_url} -H 'Content-Type: application/json' -d '{body}'"
    example = (
        f"np.array([{values}], dtype=np.float32)" if values
        else f"rng.standard_normal((1, {features}), dtype=np.float32)"
    )
    return ["import torch, zoo"], python, http, example


def _limits(spec: ModelSpec, manifest: Manifest) -> str:
    lines = ["## Limits", ""]
    if spec.notes:
        lines.append(f"- {spec.notes}")
    if spec.interface is None:
        lines.append(
            "- Its answer is where this recipe's descent ended: other starting parameters, steps or learning "
            "rates can end elsewhere."
        )
    else:
        lines.append(
            f"- Its metrics are measured on {manifest.get('data', {}).get('description', 'its held-out data')};"
            " other data, or inputs prepared differently from what the preprocessing above says, will score "
            "otherwise."
        )
    lines += [
        f"- Trained once, with seed {manifest.get('seed', '?')} on {manifest.get('device', '?')}: another seed, "
        "device or torch version gives slightly different weights.",
        f"- License: the zoo declares none ({LICENSE} in the metadata above); the data set's own terms apply "
        "to what was learned from it.",
    ]
    return "\n".join(lines)


def _shape(shape: tuple[Any, ...]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
