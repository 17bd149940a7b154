"""`zoo`: list, info, train, evaluate, export and serve the zoo's models.

Commands only gather options and call the zoo package; ZooError becomes an exit code in one place,
`ZooGroup.invoke`.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from enum import Enum
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from typer.core import TyperGroup

import zoo
from zoo.errors import ZooError

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


class ZooGroup(TyperGroup):
    """Turns every ZooError raised by a command into a one-line message on stderr and a non-zero exit:
    2 for a mistake in what the user asked for (like a usage error), 1 for a fault of data or files on disk."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZooError as error:
            errors.print(f"[bold red]error:[/] {escape(str(error))}", soft_wrap=True)
            raise typer.Exit(2 if error.caller_error else 1) from None


app = typer.Typer(
    cls=ZooGroup,
    help="A packaged model zoo of five PyTorch tutorials: train, evaluate, export and serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        import torch

        console.print(f"zoo {importlib.metadata.version('zoo')} (torch {torch.__version__})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the zoo's version and exit.")] = False,
) -> None:
    """A packaged model zoo of five PyTorch tutorials: train, evaluate, export and serve."""

ModelArg = Annotated[str, typer.Argument(help="Model name, see `zoo list`.", show_default=False)]
RefArg = Annotated[str, typer.Argument(help="MODEL or MODEL:VERSION (latest when no version).", show_default=False)]
WeightsDir = Annotated[Optional[str], typer.Option(
    help="Weights root; default $ZOO_WEIGHTS_DIR, else your user folder (~/.local/share/zoo/weights) beside the released versions.")]
DataDir = Annotated[Optional[str], typer.Option(help="Data root holding MNIST/raw; default $ZOO_DATA_DIR, else ~/.cache/zoo/data.")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _metrics_line(metrics: dict[str, Any], limit: int = 99) -> str:
    scalars = [(k, v) for k, v in metrics.items() if not isinstance(v, (list, dict))]
    return ", ".join(f"{k} {_fmt(v)}" for k, v in scalars[:limit])


@app.command("list")
def list_command(
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List the registered models with their recipes and trained versions."""
    rows = [zoo.describe_model(name, weights_dir) for name in zoo.list_models()]
    if as_json:
        return _print_json(rows)
    table = Table(title="zoo models")
    table.add_column("model", no_wrap=True)
    for column in ("task", "params", "recipes", "versions", "latest version's metrics"):
        table.add_column(column)
    for row in rows:
        latest = row["versions"][-1] if row["versions"] else None
        table.add_row(
            row["name"], row["task"], f"{row['parameters']:,}", ", ".join(row["recipes"]),
            str(len(row["versions"])), _metrics_line(latest["metrics"], limit=2) if latest else "-",
        )
    console.print(table)


@app.command()
def info(model: ModelArg, weights_dir: WeightsDir = None, as_json: JsonFlag = False) -> None:
    """Show a model's architecture, parameter count, recipes and versions."""
    row = zoo.describe_model(model, weights_dir)
    if as_json:
        return _print_json(row)
    console.print(f"[bold]{row['name']}[/] - {row['summary']}")
    console.print(f"source: document {row['source']}")
    console.print(f"task: {row['task']}   data: {row['dataset']}   parameters: {row['parameters']:,}")
    if row["input"]:
        console.print(f"input: {row['input']['name']} {row['input']['shape']} {row['input']['dtype']}"
                      f" -> output: {row['output']['name']} {row['output']['shape']}")
    console.print(f"preprocessing: {row['preprocessing']}")
    if row["notes"]:
        console.print(f"notes: {row['notes']}")
    console.print(row["architecture"], markup=False)
    recipes = Table("recipe", "hyperparameters", title="recipes")
    for name, params in row["recipes"].items():
        marker = " (default)" if name == row["default_recipe"] else ""
        recipes.add_row(name + marker, ", ".join(f"{k}={v}" for k, v in params.items()))
    console.print(recipes)
    versions = Table("version", "recipe", "metrics", "created", title=f"versions in {row['weights_dir']}")
    for version in row["versions"]:
        versions.add_row(str(version["version"]), version["recipe"], _metrics_line(version["metrics"]), version["created"])
    console.print(versions if row["versions"] else f"no trained versions in {row['weights_dir']}")


@app.command()
def train(
    model: ModelArg,
    recipe: Annotated[Optional[str], typer.Option(help="Recipe name, see `zoo info MODEL`; default: the best one.")] = None,
    device: Device = "auto",
    epochs: Annotated[Optional[int], typer.Option(help="Override the recipe's epochs (steps for single-batch models).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Override the learning rate.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Override the batch size.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Override the seed.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override any recipe key: --set key=value (repeatable).")] = None,
    data_dir: DataDir = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a model and store the result as a new weights version."""
    overrides: dict[str, Any] = zoo.parse_assignments(set_ or [])
    for key, value in (("epochs", epochs), ("lr", lr), ("batch_size", batch_size), ("seed", seed)):
        if value is not None:
            overrides[key] = value
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4g}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=errors, transient=True, disable=as_json) as bar:
        task = bar.add_task(f"train {model}", total=None, loss=float("nan"))
        result = zoo.train(
            model, recipe, overrides, device=device, data_dir=data_dir, weights_dir=weights_dir,
            on_progress=lambda p: bar.update(task, completed=p.step, total=p.total, loss=p.loss),
        )
    for failure in result.card_failures:
        errors.print(f"[bold yellow]warning:[/] the card was published without {escape(failure)}; "
                     f"`zoo card {model}:{result.version}` draws it again", soft_wrap=True)
    if as_json:
        return _print_json(result.manifest)
    manifest = result.manifest
    console.print(f"[bold green]{model}[/] version {result.version} ({manifest['recipe']['name']} recipe, "
                  f"{manifest['device']}, {manifest['training_seconds']:.1f} s) -> {result.path}")
    table = Table("metric", "value")
    for key, value in result.metrics.items():
        table.add_row(key, _fmt(value))
    console.print(table)


# Choices come from zoo's one table of formats, so a new format is a new choice here too.
Backend = Enum("Backend", {name: name for name in zoo.BACKENDS}, type=str)
Format = Enum("Format", {**{name: name for name in zoo.FORMATS}, "all": "all"}, type=str)


@app.command()
def evaluate(
    ref: RefArg,
    backend: Annotated[Backend, typer.Option(help="Runtime to score with.")] = Backend["torch"],
    device: Device = "cpu",
    data_dir: DataDir = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Check a version's weights against its manifest and recompute its held-out metrics."""
    report = zoo.evaluate(ref, weights_dir=weights_dir, data_dir=data_dir, device=device, backend=backend.value)
    if as_json:
        return _print_json(report)
    table = Table("metric", "now", "recorded", title=f"{report['model']} version {report['version']} ({report['backend']})")
    for key, value in report["metrics"].items():
        table.add_row(key, _fmt(value), _fmt(report["recorded"].get(key, "-")))
    console.print(table)


@app.command()
def export(
    ref: RefArg,
    format_: Annotated[list[Format], typer.Option("--format", "-f", help=f"Artifact to write (repeatable): {', '.join(zoo.FORMATS)} or all.")] = [Format["onnx"]],  # noqa: B006 (Typer reads it, never mutates it)
    opset: Annotated[Optional[int], typer.Option(help="ONNX opset; default: the exporter's own.")] = None,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="Compare each artifact with PyTorch eager before keeping it.")] = True,
    weights_dir: WeightsDir = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Export a version to ONNX, TorchScript or torch.export files beside its weights, verified against eager."""
    report = zoo.export(ref, [f.value for f in format_], opset=opset, verify=verify,
                        weights_dir=weights_dir, data_dir=data_dir)
    if as_json:
        return _print_json(report)
    table = Table("format", "file", "size", "sha256", "max abs diff", title=f"{report['model']} version {report['version']} -> {report['folder']}")
    for fmt, entry in report["artifacts"].items():
        check = entry["verification"]
        table.add_row(fmt, entry["file"], f"{entry['bytes'] / 1024:,.0f} KiB", entry["sha256"][:12],
                      f"{check['max_abs_diff']:.2g}" if check else "not verified")
    console.print(table)
    for fmt in report["artifacts"]:
        if zoo.FORMATS[fmt].note:
            console.print(f"note: {zoo.FORMATS[fmt].note}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="gunicorn worker processes; each loads its own models.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Request threads per worker.")] = 4,
    backend: Annotated[Backend, typer.Option(help="Runtime answering requests (onnx needs `zoo export MODEL -f onnx`).")] = Backend["torch"],
    weights_dir: WeightsDir = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413.")] = 8 * 1024 * 1024,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images or values in one request.")] = 256,
    models: Annotated[Optional[str], typer.Option(help="Comma-separated models to serve; default: every model with a version.")] = None,
) -> None:
    """Serve every stored version of every model that has one over HTTP (gunicorn; drawing page at /)."""
    from zoo.serve.wsgi import run

    chosen = tuple(filter(None, (name.strip() for name in models.split(",")))) if models is not None else None
    run(host=host, port=port, workers=workers, threads=threads, backend=backend.value, weights_dir=weights_dir,
        max_body_bytes=max_body_bytes, max_batch=max_batch, models=chosen)


@app.command()
def card(
    ref: RefArg,
    device: Device = "cpu",
    data_dir: DataDir = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Write or rewrite a stored version's model card (README.md) and its figures, in the version's folder."""
    report = zoo.draw_card(ref, weights_dir=weights_dir, data_dir=data_dir, device=device)
    if as_json:
        return _print_json(report)
    console.print(f"[bold green]{report['model']}[/] version {report['version']}: card and "
                  f"{len(report['figures'])} figures ({', '.join(report['figures'])}) drawn in "
                  f"{report['drawing_seconds']:.1f} s -> {report['folder']}")


@app.command()
def compare(
    refs: Annotated[list[str], typer.Argument(help="Two or more versions of one model: MODEL:A MODEL:B ...",
                                              show_default=False)],
    figure: Annotated[Optional[str], typer.Option(help="Where to write the loss curves' PNG; default: "
                                                       "MODEL-A-B-loss.png in the current folder.")] = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Set versions of one model side by side: metrics, recipe differences, and their loss curves in one figure."""
    report = zoo.compare(refs, weights_dir=weights_dir, figure=figure)
    if as_json:
        return _print_json(report)
    heads = [f"{report['model']}:{version}" for version in report["versions"]]
    metrics = Table("metric", *heads, title=f"{report['model']}: metrics")
    for key, values in report["metrics"].items():
        metrics.add_row(key, *(_fmt(v) if v is not None else "-" for v in values))
    console.print(metrics)
    recipes = Table("hyperparameter", *heads, title="recipe differences")
    for key, values in report["recipe_differences"].items():
        recipes.add_row(key, *(_fmt(v) for v in values))
    console.print(recipes if report["recipe_differences"] else "the recipes are the same")
    console.print(f"loss curves -> {report['figure']}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
