"""The model card's figures: what a figure is drawn from, the shared drawers, and deterministic PNG output.

Figures are drawn with matplotlib's Agg canvas (never pyplot, so no display and no global state), at a fixed
size and dpi, with no timestamp or software tag in the PNG: the same version always gives the same bytes.
matplotlib is imported only when something is drawn, so importing the zoo stays fast.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from zoo.core.data import DataContext, Splits
from zoo.core.recipes import Recipe
from zoo.core.spec import CardFigure, ModelSpec
from zoo.core.tasks import predict_logits
from zoo.store.atomic import replace_file
from zoo.store.manifest import Manifest, sampled_steps

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
COMPARISON_SIZE = (8.0, 5.0)
# Loss curves whose positive values span this ratio or more are drawn on a log scale.
LOG_SCALE_RATIO = 100.0
FEW_POINTS = 20


@dataclass
class Drawing:
    """What a version's figures are drawn from: its spec, recipe and manifest, its eval-mode module, and its data."""

    spec: ModelSpec
    recipe: Recipe
    manifest: Manifest
    model: nn.Module
    context: DataContext

    @functools.cached_property
    def splits(self) -> Splits:
        """The objective's data for this recipe (a supervised model's; a minimised one has none)."""
        return self.spec.objective.load_data(self.recipe, self.context)

    @functools.cached_property
    def test_outputs(self) -> torch.Tensor:
        """The module's outputs on the held-out inputs, on the CPU."""
        with torch.no_grad():
            return predict_logits(self.model, self.splits.test_x).float().cpu()

    @property
    def label(self) -> str:
        """The model and its recipe, with every value that differs from the named recipe: `tiny-fnn (document
        recipe, activation=relu)`."""
        return f"{self.spec.name} ({recipe_label(self.spec, self.manifest)})"


def recipe_changes(spec: ModelSpec, manifest: Manifest) -> dict[str, object]:
    """The hyperparameters of a version that differ from its named recipe as the spec declares it today."""
    record = manifest.get("recipe", {})
    named = spec.recipes.get(record.get("name", ""))
    base = named.to_dict() if named else {}
    return {key: value for key, value in record.get("params", {}).items()
            if key not in base or json_ready(base[key]) != json_ready(value)}


def recipe_label(spec: ModelSpec, manifest: Manifest) -> str:
    changes = recipe_changes(spec, manifest)
    name = manifest.get("recipe", {}).get("name", "unknown")
    return ", ".join([f"{name} recipe", *(f"{key}={json_ready(value)}" for key, value in changes.items())])


def json_ready(value: object) -> object:
    """`value` with tuples as lists, as a manifest's JSON holds it."""
    if isinstance(value, (tuple, list)):
        return [json_ready(item) for item in value]
    return value


@dataclass(frozen=True)
class LossCurve:
    """The training loss at each recorded epoch or step, as `manifest.json` keeps it (at most 101 points).

    `unit` names what the history counts (epoch, step, iteration); `first` is the number of its first entry:
    1 for epochs, 0 for steps counted as the document counts them (the loss before the first update is step 0).
    """

    unit: str = "epoch"
    first: int = 1
    markers: bool = False

    def positions(self, manifest: Manifest) -> list[int]:
        """The epoch or step of each loss the manifest recorded."""
        history = manifest.get("loss_history", [])
        length = manifest.get("recipe", {}).get("params", {}).get("epochs", len(history))
        steps = sampled_steps(length)
        if len(steps) != len(history):  # a history that was not sampled the usual way: spread it evenly
            steps = list(range(len(history)))
        return [step + self.first for step in steps]

    def __call__(self, drawing: Drawing, figure: Figure) -> None:
        axes = figure.subplots()
        plot_losses(axes, [(None, self.positions(drawing.manifest), drawing.manifest.get("loss_history", []))],
                    self.unit, self.markers)
        axes.set_title(f"{drawing.label}: training loss per {self.unit}")


def loss_curve(unit: str = "epoch", first: int = 1, markers: bool = False) -> CardFigure:
    """The card figure every model has: its training loss per epoch or step, on a log scale where it spans decades."""
    return CardFigure("loss.png", f"Training loss per {unit}", LossCurve(unit, first, markers))


def spec_loss_curve(spec: ModelSpec) -> LossCurve:
    """The loss curve a spec's card draws (the default one when it declares none)."""
    return next((f.draw for f in card_figures(spec) if isinstance(f.draw, LossCurve)), LossCurve())


def card_figures(spec: ModelSpec) -> tuple[CardFigure, ...]:
    """The figures a spec's card has: those it declares, else the loss curve alone."""
    return spec.figures if spec.figures is not None else (loss_curve(),)


def plot_losses(axes: Axes, curves: Sequence[tuple[str | None, Sequence[int], Sequence[float]]], unit: str,
                markers: bool = False) -> None:
    """Loss curves (label, positions, losses) on one axes; log scale when the positive losses span decades."""
    from matplotlib.ticker import MaxNLocator

    positive = [loss for _, _, losses in curves for loss in losses if loss > 0]
    for label, positions, losses in curves:
        # A few points get markers: a line through one point (a one-epoch run) draws nothing at all.
        marked = markers or len(losses) <= FEW_POINTS
        axes.plot(positions, losses, marker="o" if marked else None, markersize=4, linewidth=1.5, label=label)
    if positive and max(positive) / min(positive) >= LOG_SCALE_RATIO:
        axes.set_yscale("log")
        axes.set_ylabel("training loss (log scale)")
    else:
        axes.set_ylabel("training loss")
    axes.set_xlabel(unit)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    axes.grid(True, which="major", alpha=0.3)
    if any(label for label, _, _ in curves):
        axes.legend()


def draw_confusion_matrix(drawing: Drawing, figure: Figure) -> None:
    """Counts of each true class (rows) against each predicted class (columns) over the held-out set."""
    from matplotlib.colors import LogNorm

    truth = drawing.splits.test_y.cpu().numpy()
    predicted = drawing.test_outputs.argmax(1).numpy()
    categories = drawing.spec.interface.categories
    size = len(categories)
    counts = np.zeros((size, size), dtype=np.int64)
    np.add.at(counts, (truth, predicted), 1)
    axes = figure.subplots()
    # A log colour scale, so the few errors show beside a diagonal of ~1000 each; zero cells stay blank.
    image = axes.imshow(np.ma.masked_equal(counts, 0), cmap="Blues", norm=LogNorm(vmin=1, vmax=max(1, counts.max())))
    for (row, column), count in np.ndenumerate(counts):
        if count:
            light = count > counts.max() ** 0.5
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7,
                      color="white" if light else "black")
    axes.set_xticks(range(size), categories)
    axes.set_yticks(range(size), categories)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    accuracy = 100.0 * (truth == predicted).mean()
    axes.set_title(f"{drawing.label}\nconfusion matrix on {len(truth)} test items ({accuracy:.2f}% right)")
    figure.colorbar(image, ax=axes, label="count (log scale)")


CONFUSION_MATRIX = CardFigure("confusion_matrix.png", "Confusion matrix on the test set", draw_confusion_matrix,
                              size=(7.0, 6.0))

MISCLASSIFIED_SHOWN = 24


def draw_misclassified(drawing: Drawing, figure: Figure) -> None:
    """The held-out images the model got wrong with the most confidence, with their true and predicted labels."""
    probabilities = torch.softmax(drawing.test_outputs, dim=1)
    confidence, predicted = probabilities.max(1)
    truth = drawing.splits.test_y.cpu()
    wrong = torch.nonzero(predicted != truth).flatten()
    # Most confident first; a stable sort keeps ties in test-set order, so the grid is the same every time.
    order = wrong[torch.sort(-confidence[wrong], stable=True).indices][:MISCLASSIFIED_SHOWN]
    categories = drawing.spec.interface.categories
    columns = 6
    grid = figure.subplots(MISCLASSIFIED_SHOWN // columns, columns)
    images = drawing.splits.test_x
    for cell, axes in enumerate(grid.flat):
        axes.set_axis_off()
        if cell < len(order):
            index = int(order[cell])
            axes.imshow(images[index].detach().cpu().float().reshape(images.shape[-2:]).numpy(), cmap="gray",
                        vmin=0.0, vmax=1.0)
            axes.set_title(f"true {categories[int(truth[index])]}, said {categories[int(predicted[index])]}\n"
                           f"{100 * float(confidence[index]):.1f}% (#{index})", fontsize=8)
    shown = f"the {len(order)} most confident of {len(wrong)}" if len(wrong) else "none: every test item is right"
    figure.suptitle(f"{drawing.label}: misclassified test digits, {shown}")


MISCLASSIFIED_DIGITS = CardFigure("misclassified.png", "The most confidently misclassified test digits",
                                  draw_misclassified, size=(8.0, 6.5))


def render(size: tuple[float, float], draw: Callable[[Figure], None], path: Path) -> None:
    """A blank figure of `size` inches filled by `draw`, written to `path` as a deterministic PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    draw(figure)
    save_png(figure, path)


def save_png(figure: Figure, path: Path) -> None:
    """Write the figure as a PNG with no metadata (no software tag or date), whole or not at all."""
    replace_file(path, lambda handle: figure.savefig(handle, format="png", dpi=DPI, metadata={"Software": None}))


def draw_figure(figure_spec: CardFigure, drawing: Drawing, path: Path) -> None:
    """One card figure of `drawing`, written to `path`."""
    render(figure_spec.size, lambda figure: figure_spec.draw(drawing, figure), path)


def draw_loss_comparison(curve: LossCurve, manifests: Sequence[Manifest], labels: Sequence[str], title: str,
                         path: Path) -> None:
    """The loss curves of several versions of one model overlaid on one axes, written to `path`."""
    def draw(figure: Figure) -> None:
        axes = figure.subplots()
        plot_losses(
            axes,
            [
                (label, curve.positions(m), m.get("loss_history", []))
                for label, m in zip(labels, manifests, strict=True)
            ],
            curve.unit,
        )
        axes.set_title(title)

    render(COMPARISON_SIZE, draw, path)
