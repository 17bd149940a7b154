"""`zoo`: list, info, train, predict, evaluate, export and serve the zoo's models.

Commands only gather options and call the zoo package; ZooError becomes an exit code in one place,
`ZooGroup.invoke`. Nothing here imports torch at module level (`import zoo` is lazy, the formats table and
the registry's catalog are read without it), so --help, --version, `zoo list` and shell completion answer
before torch would have loaded; a command that needs it imports it through the zoo call it makes.
"""

from __future__ import annotations

import csv
import json
import sys
from enum import Enum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

import zoo
from zoo.core.errors import ZooError
from zoo.core.recipes import PRECISIONS
from zoo.exports.formats import BACKENDS, FORMATS, TRITON_FORMATS

console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


# The zoo's parameters and functions, as this command line spells them: an error naming one as its fix says the flag
# or the command instead (zoo.core.errors: Setting, Call).
FLAGS = {"device": "--device", "data_dir": "--data-dir", "weights_dir": "--weights-dir",
         "nproc_per_node": "--nproc-per-node", "formats": "--format", "versions": "--versions",
         "train": "zoo train", "export": "zoo export", "describe_model": "zoo info"}


class ZooGroup(TyperGroup):
    """Turns every ZooError raised by a command into a one-line message on stderr and a non-zero exit:
    2 for a mistake in what the user asked for (like a usage error), 1 for a fault of data or files on disk.
    The parameters the message names as fixes are said as this command line's flags (FLAGS)."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # typer passes its own Context
        try:
            return super().invoke(ctx)
        except ZooError as error:
            errors.print(f"[bold red]error:[/] {escape(error.spelled(FLAGS))}", soft_wrap=True)
            raise typer.Exit(2 if error.caller_error else 1) from None

    # Typer coerces every parameter through a pydantic TypeAdapter, built on first use: importing pydantic is
    # ~60 ms of a start that must stay under 0.3 s. The on/off flags that --help processes (--help, --version,
    # --install-completion...) are already bools, and completion only reads the words typed so far, so neither
    # needs it; a command that runs still coerces all its other parameters through Typer's adapters.
    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return _uncoerced(super().get_params(ctx), ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _uncoerced(command.get_params(ctx), ctx)
        return command


try:  # Typer's coercion layer, private to Typer 0.29: another Typer coerces as it always does, only slower to start
    from typer._coercion import RuntimeParam

    class _AsParsed(RuntimeParam):
        """Typer's coercion step that keeps the value click parsed."""

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            return value
except ImportError:
    _AsParsed = None  # type: ignore[assignment,misc]


def _uncoerced(params: list[Any], ctx: typer.Context) -> list[Any]:
    """Lets on/off flags, and while completing every parameter, keep the value click parsed (a flag's is a bool)."""
    if _AsParsed is None:
        return params
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if descriptor is None or getattr(param, "_runtime_param", False) is not None:
            continue  # not a Typer parameter, or coerced already
        if ctx.resilient_parsing or (getattr(param, "is_flag", False) and descriptor.annotation is bool):
            param._runtime_param = _AsParsed(annotation=descriptor.annotation, parameter_info=descriptor.parameter_info)
    return params

app = typer.Typer(
    cls=ZooGroup,
    help="A packaged model zoo of five PyTorch tutorials: train, predict, evaluate, export and serve.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain help, as click writes it: Typer's rich panels import rich's Markdown and traceback renderers (~50 ms
    # here), which alone would put `zoo CMD --help` over its 0.3 s budget. Tables and errors still use rich.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        import importlib.metadata  # here, not at the top: 30 ms that no other command needs

        console.print(f"zoo {importlib.metadata.version('zoo')} (torch {importlib.metadata.version('torch')})")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the zoo's version and exit.")] = False,
) -> None:
    """A packaged model zoo of five PyTorch tutorials: train, predict, evaluate, export and serve."""


def complete_model(incomplete: str) -> list[str]:
    """Registered model names (from the registry's catalog: no torch once it is cached)."""
    try:
        return [name for name in zoo.model_catalog() if name.startswith(incomplete)]
    except Exception:  # a completion that fails offers nothing, never a traceback in the user's shell
        return []


def complete_ref(ctx: typer.Context, incomplete: str) -> list[str]:
    """Model names, and after `MODEL:` that model's stored versions (in --weights-dir when it came first)."""
    if ":" not in incomplete:
        return [f"{name}:" for name in complete_model(incomplete)] + complete_model(incomplete)
    name = incomplete.split(":", 1)[0]
    try:
        versions = zoo.WeightsStore(ctx.params.get("weights_dir")).versions(name)
    except Exception:
        return []
    return [ref for ref in (*(str(zoo.ModelRef(name, v)) for v in versions), f"{name}:latest")
            if ref.startswith(incomplete)]


def complete_recipe(ctx: typer.Context, incomplete: str) -> list[str]:
    """The recipes of the model named earlier on the command line."""
    # While completing, the positional MODEL may still sit unparsed in ctx.args.
    model = ctx.params.get("model") or next(iter(ctx.args), "")
    try:
        recipes = zoo.model_catalog()[model]["recipes"]
    except Exception:
        return []
    return [name for name in recipes if name.startswith(incomplete)]


ModelArg = Annotated[str, typer.Argument(help="Model name, see `zoo list`.", show_default=False,
                                         autocompletion=complete_model)]
RefArg = Annotated[str, typer.Argument(help="MODEL or MODEL:VERSION (latest when no version).", show_default=False,
                                       autocompletion=complete_ref)]
WeightsDir = Annotated[
    str | None,
    typer.Option(
        help="Weights root; default $ZOO_WEIGHTS_DIR, else your user folder (~/.local/share/zoo/weights) beside the "
             "released versions."
    ),
]
DataDir = Annotated[
    str | None, typer.Option(help="Data root holding MNIST/raw; default $ZOO_DATA_DIR, else ~/.cache/zoo/data.")
]
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
    store = zoo.WeightsStore.at(weights_dir)
    rows = [zoo.describe_model(name, store) for name in zoo.model_catalog()]
    if as_json:
        return _print_json(rows)
    table = Table(title="zoo models")
    table.add_column("model", no_wrap=True)
    for column in ("task", "params", "recipes", "versions", "latest version's metrics"):
        table.add_column(column)
    for row in rows:
        latest = row["versions"][-1] if row["versions"] else None
        table.add_row(
            row["name"],
            row["task"],
            f"{row['parameters']:,}",
            ", ".join(row["recipes"]),
            str(len(row["versions"])),
            _metrics_line(latest["metrics"], limit=2) if latest else "-",
        )
    console.print(table)


@app.command()
def info(model: ModelArg, weights_dir: WeightsDir = None, as_json: JsonFlag = False) -> None:
    """Show a model's architecture, parameter count, recipes and versions."""
    row = zoo.describe_model(model, zoo.WeightsStore.at(weights_dir))
    if as_json:
        return _print_json(row)
    console.print(f"[bold]{row['name']}[/] - {row['summary']}")
    console.print(f"source: document {row['source']}")
    console.print(f"task: {row['task']}   data: {row['dataset']}   parameters: {row['parameters']:,}")
    if row["input"]:
        console.print(
            f"input: {row['input']['name']} {row['input']['shape']} {row['input']['dtype']}"
            f" -> output: {row['output']['name']} {row['output']['shape']}"
        )
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
        versions.add_row(
            str(version["version"]), version["recipe"], _metrics_line(version["metrics"]), version["created"]
        )
    console.print(versions if row["versions"] else f"no trained versions in {row['weights_dir']}")


@app.command()
def train(
    model: ModelArg,
    recipe: Annotated[
        str | None,
        typer.Option(help="Recipe name, see `zoo info MODEL`; default: the best one.", autocompletion=complete_recipe),
    ] = None,
    device: Device = "auto",
    epochs: Annotated[
        int | None, typer.Option(help="Override the recipe's epochs (steps for single-batch models).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Override the learning rate.")] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Override the batch size (the global batch over all processes).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the seed.")] = None,
    # A string checked by the recipe, not an Enum: a bad value gets the zoo's one-line error, like --set's.
    precision: Annotated[
        str | None,
        typer.Option(
            help=f"Override the training arithmetic: {', '.join(PRECISIONS)} (fp16 on CUDA only); weights stay "
                 "float32.",
            show_default=False,
        ),
    ] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Override any recipe key: --set key=value (repeatable).")
    ] = None,
    data_dir: DataDir = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
    nproc_per_node: Annotated[
        int,
        typer.Option(
            min=1, help="Processes on this machine, data-parallel through torchrun (DDP: gloo on CPU, nccl on CUDA)."
        ),
    ] = 1,
    nnodes: Annotated[
        int, typer.Option(min=1, help="Machines in the run; start the same command on each with its --node-rank.")
    ] = 1,
    node_rank: Annotated[
        int, typer.Option(min=0, help="This machine's rank, 0 to nnodes-1 (rank 0 publishes the version).")
    ] = 0,
    master_addr: Annotated[
        str | None, typer.Option(help="Address of node 0, where the ranks meet (several machines).")
    ] = None,
    master_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port on node 0 where the ranks meet.")
    ] = None,
    from_: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Fine-tune: start from this stored version's weights (MODEL:VERSION of the same model).",
            autocompletion=complete_ref,
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the same command's killed or crashed run from "
            "its last checkpoint (same weights, bit for bit on CPU).",
        ),
    ] = False,
    checkpoint_every: Annotated[int, typer.Option(min=1, help="Write a resumable checkpoint every N epochs.")] = 1,
) -> None:
    """Train a model and store the result as a new weights version (on several processes with --nproc-per-node)."""
    overrides: dict[str, Any] = zoo.parse_assignments(set_ or [])
    for key, value in (
        ("epochs", epochs),
        ("lr", lr),
        ("batch_size", batch_size),
        ("seed", seed),
        ("precision", precision),
    ):
        if value is not None:
            overrides[key] = value
    topology, world = zoo.Topology(nproc_per_node, nnodes, node_rank, master_addr, master_port), zoo.World.from_env()
    store, parent = zoo.WeightsStore.at(weights_dir), zoo.ModelRef.parse(from_) if from_ is not None else None
    if topology.world_size > 1:
        if world.size > 1:
            raise zoo.InvalidSettingError(
                f"--nproc-per-node/--nnodes start a run, but this process is already rank "
                f"{world.rank} of one (WORLD_SIZE is set); drop them"
            )
        # The caller's mistakes are refused here, before any process starts; each rank is zoo's own entry point.
        zoo.check_training(model, recipe, overrides, device, topology.world_size)
        launched = zoo.launch_training(topology, model, recipe=recipe, overrides=overrides, data_dir=data_dir,
                                       weights_dir=store, device=device, parent=parent, resume=resume,
                                       checkpoint_every=checkpoint_every)
        return _report_training(model, launched, as_json) if launched is not None else None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=errors, transient=True, disable=as_json or not world.is_main) as bar:
        task = bar.add_task(f"train {model}", total=None, loss=float("nan"))

        def resumed(epoch: int, epochs: int) -> None:
            if world.is_main:
                errors.print(f"resuming {escape(model)} from its checkpoint after epoch {epoch} of {epochs}")

        result = zoo.train(
            model,
            recipe,
            overrides,
            data_dir=data_dir,
            weights_dir=store,
            device=device,
            on_progress=lambda p: bar.update(task, completed=p.step, total=p.total, loss=p.loss),
            parent=parent,
            resume=resume,
            checkpoint_every=checkpoint_every,
            on_resume=resumed,
        )
    if result.rank != 0:
        return None
    return _report_training(model, result, as_json)


def _report_training(model: str, result: Any, as_json: bool) -> None:
    """What `zoo train` prints of a new version (a zoo.TrainResult): warnings on stderr, then its summary or JSON."""
    for failure in result.card_failures:
        errors.print(
            f"[bold yellow]warning:[/] the card was published without {escape(failure)}; "
            f"`zoo card {zoo.ModelRef(model, result.version)}` draws it again",
            soft_wrap=True,
        )
    if as_json:
        _print_json(result.manifest)
        return
    manifest = result.manifest
    processes = manifest["distributed"]["world_size"]
    console.print(
        f"[bold green]{model}[/] version {result.version} ({manifest['recipe']['name']} recipe, "
        f"{manifest['device']}{f' x {processes} processes' if processes > 1 else ''}, {manifest['precision']}, "
        f"{manifest['training_seconds']:.1f} s) -> {result.path}"
    )
    if "parent" in manifest:
        parent = manifest["parent"]
        console.print(f"fine-tuned from {parent['ref']} (weights sha256 {parent['sha256'][:12]})")
    if result.resumed_from is not None:
        console.print(f"resumed from the checkpoint after epoch {result.resumed_from}")
    table = Table("metric", "value")
    for key, value in result.metrics.items():
        table.add_row(key, _fmt(value))
    console.print(table)


# Choices come from zoo's one table of formats, so a new format is a new choice here too.
# mypy cannot see an Enum's members made from a table; each choice is checked by the zoo call it reaches.
Backend = Enum("Backend", {name: name for name in BACKENDS}, type=str)  # type: ignore[misc]
Format = Enum("Format", {**{name: name for name in FORMATS}, "all": "all"}, type=str)  # type: ignore[misc]


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
    report = zoo.evaluate(zoo.ModelRef.parse(ref), data_dir=data_dir, weights_dir=zoo.WeightsStore.at(weights_dir),
                          device=device, backend=backend.value)
    if as_json:
        return _print_json(report.to_dict())
    table = Table("metric", "now", "recorded", title=f"{report.model} version {report.version} ({report.backend})")
    for key, value in report.metrics.items():
        table.add_row(key, _fmt(value), _fmt(report.recorded.get(key, "-")))
    console.print(table)


@app.command()
def export(
    ref: RefArg,
    format_: Annotated[
        list[Format],
        typer.Option(
            "--format", "-f", help=f"Artifact to write (repeatable): {', '.join(FORMATS)} or all (every lossless one)."
        ),
    ] = [Format["onnx"]],  # noqa: B006 (Typer reads it, never mutates it)
    opset: Annotated[int | None, typer.Option(help="ONNX opset; default: the exporter's own.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Compare each artifact with PyTorch eager before keeping it.")
    ] = True,
    weights_dir: WeightsDir = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Export a version to ONNX (float32, int8, fp16), TorchScript or torch.export files beside its weights, each
    verified: against eager, or for int8 and fp16 on the test split against float32."""
    report = zoo.export(zoo.ModelRef.parse(ref), [f.value for f in format_], data_dir=data_dir,
                        weights_dir=zoo.WeightsStore.at(weights_dir), opset=opset, verify=verify)
    if as_json:
        return _print_json(report.to_dict())
    table = Table(
        "format",
        "file",
        "size",
        "sha256",
        "max abs diff",
        "test split",
        title=f"{report.model} version {report.version} -> {report.folder}",
    )
    for fmt, entry in report.artifacts.items():
        check = entry["verification"]
        table.add_row(
            fmt,
            entry["file"],
            f"{entry['bytes'] / 1024:,.0f} KiB",
            entry["sha256"][:12],
            f"{check['max_abs_diff']:.2g}" if check else "not verified",
            _task_score(check),
        )
    console.print(table)
    for fmt in report.artifacts:
        if zoo.FORMATS[fmt].note:
            console.print(f"note: {zoo.FORMATS[fmt].note}")


def _task_score(check: dict | None) -> str:
    """A lossy file's verification on the test split, e.g. `98.46% (-0.02)`; lossless files answer as eager."""
    if not check or "measure" not in check:
        return "as eager" if check else ""
    if "accuracy" in check:
        return f"{check['accuracy']:.2f}% ({-check['accuracy_drop']:+.2f})"
    return f"rel. error {check['relative_error']:.2g}"


ServeBackend = Enum(  # type: ignore[misc]
    "ServeBackend", {"auto": "auto", **{name: name for name in BACKENDS}}, type=str
)
AccessLog = Enum("AccessLog", {"text": "text", "json": "json"}, type=str)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 for every interface.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes; each loads its own models.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Request threads per worker (1 measured best on 2 cores).")] = 1,
    backend: Annotated[
        ServeBackend,
        typer.Option(
            help="auto: ONNX Runtime for each version with an ONNX export, PyTorch for one without; or one for all."
        ),
    ] = ServeBackend["auto"],
    weights_dir: WeightsDir = None,
    max_body_bytes: Annotated[int, typer.Option(min=1, help="Largest request body accepted; larger ones get 413.")] = 8
    * 1024
    * 1024,
    max_batch: Annotated[int, typer.Option(min=1, help="Most images or values in one request.")] = 256,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models to serve; default: every model with a version.")
    ] = None,
    versions: Annotated[str, typer.Option(help="Version policy: all, latest:N, or numbers like 1,3.")] = "all",
    poll_seconds: Annotated[
        float, typer.Option(min=0, help="Look for new and removed versions this often; 0 never.")
    ] = 10,
    access_log: Annotated[AccessLog | None, typer.Option(help="One line per request on stderr: text or json.")] = None,
    body_timeout: Annotated[
        float,
        typer.Option(
            min=0, help="Seconds for a request's whole body to arrive; 408 and the connection closed after. 0 never."
        ),
    ] = 30,
    max_queue: Annotated[
        int,
        typer.Option(
            min=0,
            help="Complete requests waiting in a worker; past it a request "
            "gets 503 with Retry-After at once. 0: no bound.",
        ),
    ] = 64,
    max_in_flight: Annotated[
        int,
        typer.Option(
            min=1,
            help="Requests a worker reads at once, slow clients "
            "included; more connections wait in the kernel's backlog.",
        ),
    ] = 2048,
    grpc_port: Annotated[
        int, typer.Option(min=0, help="Port for the v2 protocol over gRPC, served by every worker; 0: no gRPC.")
    ] = 8001,
) -> None:
    """Serve the stored versions of every model that has one over HTTP and gRPC (granian; page at /, /metrics)."""
    from zoo.serve.runner import run

    chosen = tuple(filter(None, (name.strip() for name in models.split(",")))) if models is not None else None
    run(
        host=host,
        port=port,
        workers=workers,
        threads=threads,
        backend=backend.value,
        weights_dir=zoo.WeightsStore.at(weights_dir),
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        models=chosen,
        versions=versions,
        poll_seconds=poll_seconds,
        access_log=access_log.value if access_log else None,
        body_timeout=body_timeout,
        max_queue=max_queue,
        max_in_flight=max_in_flight,
        grpc_port=grpc_port,
    )


# More inputs than this show a progress bar (on stderr) while they are read and answered.
PROGRESS_AFTER = 48


@app.command()
def predict(
    ref: RefArg,
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="PNG/JPEG files, folders (searched recursively), globs, .npy or .json files, - for standard input; "
            "numbers for value models (1,2,3 for one item of three features; put -- before negative ones).",
            show_default=False,
        ),
    ],
    backend: Annotated[
        ServeBackend,
        typer.Option(help="auto: ONNX Runtime when the version has an ONNX export, else PyTorch; or one backend."),
    ] = ServeBackend["auto"],
    top_k: Annotated[int, typer.Option(min=1, help="Show the K most probable classes of each input.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1, help="Inputs answered per batch.")] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per input, one per line.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV with a header line instead of a table.")] = False,
    device: Annotated[str, typer.Option(help="Device of the torch backend: cpu, cuda or cuda:N.")] = "cpu",
    weights_dir: WeightsDir = None,
) -> None:
    """Answer a stored version on your own files or numbers: digit and probability per picture, or the output value.

    An input that cannot be read is reported on its own line and the others go on; the exit code is then 1.
    """
    if as_json and as_csv:
        raise zoo.InvalidSettingError("expected one of --json and --csv, got both")
    run = zoo.predict(
        zoo.ModelRef.parse(ref),
        inputs,
        weights_dir=zoo.WeightsStore.at(weights_dir),
        device=device,
        backend=backend.value,
        batch_size=batch_size,
        stdin=sys.stdin.buffer,
    )
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=len(run.sources) <= PROGRESS_AFTER,
    )
    with bar:
        task = bar.add_task(f"predict {zoo.ModelRef(run.runtime.name, run.runtime.version)}", total=len(run.sources))
        run.on_input = lambda done: bar.update(task, completed=done)
        failed = _print_predictions(run, top_k, "json" if as_json else "csv" if as_csv else "table", errors)
    if failed:
        errors.print(f"[bold red]error:[/] {failed} input(s) could not be read (each is named above)", soft_wrap=True)
        raise typer.Exit(1)


def _print_predictions(run: Any, top_k: int, style: str, report: Console) -> int:
    """Write each prediction as it comes (json, csv) or as one table at the end; returns how many inputs failed."""
    spec, failed = run.spec, 0
    classes = spec.interface.categories
    columns = ["input", "answer", *(["probability"] if classes else []), *(["top_k"] if classes and top_k > 1 else [])]
    table = Table(*columns, title=f"{run.runtime.name} version {run.runtime.version} ({run.runtime.backend})")
    writer = csv.writer(sys.stdout, lineterminator="\n") if style == "csv" else None
    if writer is not None:
        writer.writerow(columns)
    for prediction in run:
        if style == "json":
            sys.stdout.write(json.dumps(prediction.to_dict(spec, top_k)) + "\n")
            failed += not prediction.ok
            continue
        if not prediction.ok:
            failed += 1
            report.print(f"[bold red]error:[/] {escape(prediction.input)}: {escape(prediction.error)}", soft_wrap=True)
            continue
        answer = classes[prediction.answer] if classes else _fmt(prediction.answer)
        cells = [prediction.input, answer]
        if classes:
            cells.append(f"{prediction.probability:.4f}")
            if top_k > 1:
                cells.append(" ".join(f"{classes[c]}:{p:.4f}" for c, p in prediction.top(top_k)))
        if writer is not None:
            writer.writerow(cells)
        else:
            table.add_row(*map(escape, map(str, cells)))
    if style == "table" and table.row_count:
        console.print(table)
    return failed


TritonFormat = Enum("TritonFormat", {name: name for name in TRITON_FORMATS}, type=str)  # type: ignore[misc]


@app.command("triton-repo")
def triton_repo(
    directory: Annotated[str, typer.Argument(help="New or empty folder for the repository.", show_default=False)],
    refs: Annotated[
        list[str] | None,
        typer.Argument(
            help="MODEL or MODEL:VERSION (latest when no version); default: every exported version.", show_default=False
        ),
    ] = None,
    format_: Annotated[
        list[TritonFormat],
        typer.Option(
            "--format", "-f", help=f"Format(s) to include, each in its own folder: {', '.join(TRITON_FORMATS)}."
        ),
    ] = [TritonFormat["onnx"]],  # noqa: B006 (Typer reads it, never mutates it)
    max_batch_size: Annotated[int, typer.Option(min=1, help="Triton's max_batch_size for every model.")] = 256,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Write a Triton Inference Server model repository (config.pbtxt + numbered model.onnx) from exported versions."""
    report = zoo.write_triton_repository(directory, [zoo.ModelRef.parse(ref) for ref in refs or []],
                                         [f.value for f in format_], weights_dir=zoo.WeightsStore.at(weights_dir),
                                         max_batch_size=max_batch_size)
    if as_json:
        return _print_json(report)
    table = Table(
        "folder", "platform", "versions", "inputs", "outputs", title=f"Triton repository {report['repository']}"
    )
    for model in report["models"]:
        tensors = {
            kind: ", ".join(f"{t['name']} {t['data_type']} {t['dims']}" for t in model[kind])
            for kind in ("inputs", "outputs")
        }
        table.add_row(
            model["folder"],
            model["platform"],
            ", ".join(map(str, model["versions"])),
            tensors["inputs"],
            tensors["outputs"],
        )
    console.print(table)
    console.print(f"serve it: tritonserver --model-repository {report['repository']}")


@app.command()
def card(
    ref: RefArg,
    device: Device = "cpu",
    data_dir: DataDir = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Write or rewrite a stored version's model card (README.md) and its figures, in the version's folder."""
    report = zoo.draw_card(zoo.ModelRef.parse(ref), data_dir=data_dir, weights_dir=zoo.WeightsStore.at(weights_dir),
                           device=device)
    if as_json:
        return _print_json(report.to_dict())
    console.print(
        f"[bold green]{report.model}[/] version {report.version}: card and "
        f"{len(report.figures)} figures ({', '.join(report.figures)}) drawn in "
        f"{report.drawing_seconds:.1f} s -> {report.folder}"
    )


@app.command()
def compare(
    refs: Annotated[
        list[str], typer.Argument(help="Two or more versions of one model: MODEL:A MODEL:B ...", show_default=False)
    ],
    figure: Annotated[
        str | None,
        typer.Option(help="Where to write the loss curves' PNG; default: MODEL-A-B-loss.png in the current folder."),
    ] = None,
    weights_dir: WeightsDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Set versions of one model side by side: metrics, recipe differences, and their loss curves in one figure."""
    report = zoo.compare([zoo.ModelRef.parse(ref) for ref in refs], weights_dir=zoo.WeightsStore.at(weights_dir),
                         figure=figure)
    if as_json:
        return _print_json(report.to_dict())
    heads = [str(zoo.ModelRef(report.model, version)) for version in report.versions]
    metrics = Table("metric", *heads, title=f"{report.model}: metrics")
    for key, values in report.metrics.items():
        metrics.add_row(key, *(_fmt(v) if v is not None else "-" for v in values))
    console.print(metrics)
    recipes = Table("hyperparameter", *heads, title="recipe differences")
    for key, values in report.recipe_differences.items():
        recipes.add_row(key, *(_fmt(v) for v in values))
    console.print(recipes if report.recipe_differences else "the recipes are the same")
    console.print(f"loss curves -> {report.figure}")


def main() -> None:
    from zoo.cli import completion

    command = typer.main.get_command(app)  # registers Typer's completion classes, which install() then replaces
    completion.install()
    command()


if __name__ == "__main__":
    main()
