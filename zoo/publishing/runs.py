"""Training and exporting a version with its model card: the trainer and the exporter hand the card to this layer.

The trainer knows nothing of cards and the exporter nothing of the card's text; here each is given the hook that
draws the card into a version before it is published (`card_before_publish`) or redraws its export table in the
export's own commit (`rewritten_card`).
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.cards.card import publish_card, rewritten_card
from zoo.cards.figures import Drawing
from zoo.core.reference import ModelRef
from zoo.exports import exporter
from zoo.exports.exporter import ExportResult
from zoo.store.versions import WeightsLocation, WeightsStore
from zoo.training import trainer
from zoo.training.distributed import Topology, launch
from zoo.training.trainer import Publication, TrainResult


def card_before_publish(publication: Publication) -> None:
    """Draw the model card and its figures into a version being published, and record them in its manifest."""
    drawing = Drawing(publication.spec, publication.recipe, publication.manifest, publication.model,
                      publication.context)
    publication.manifest["card"] = publish_card(publication.folder, drawing)


# zoo.train: the trainer, with the card drawn into each version before it is published.
train = functools.partial(trainer.train, before_publish=card_before_publish)
train.__doc__ = "Train a model and store a new version with its model card; see zoo.training.trainer.train."


def launch_training(topology: Topology, name: str, **arguments: Any) -> TrainResult | None:
    """`train(name, **arguments)` on every rank of `topology`, each started as `python -P -m zoo.publishing.rank`
    through torchrun; `arguments` are train's own, as plain data (no callbacks: a rank says on stderr when it
    resumes). Returns rank 0's result where rank 0 ran on this machine, else None (another node publishes); a
    failed rank raises DistributedRunError naming it and its error. A store and a ModelRef parent are handed on as
    the root and the reference that make them again."""
    arguments = {key: plain(value) for key, value in arguments.items()}
    with tempfile.TemporaryDirectory(prefix="zoo-launch-") as folder:
        request, result = Path(folder) / "request.json", Path(folder) / "result.json"
        request.write_text(json.dumps({"train": {"name": name, **arguments}, "result": str(result)}), encoding="utf-8")
        sys.stderr.flush()
        launch(topology, "zoo.publishing.rank", [str(request)])
        if not result.is_file():
            return None
        return TrainResult.from_dict(json.loads(result.read_text(encoding="utf-8")))


def plain(argument: Any) -> Any:
    """A train argument as JSON carries it to a rank: a store as its named root, a reference as its text."""
    if isinstance(argument, WeightsStore):
        root = argument.named_root
        return None if root is None else str(root)
    return str(argument) if isinstance(argument, (ModelRef, Path)) else argument


def export(
    ref: ModelRef | str,
    formats: Sequence[str] = exporter.DEFAULT_FORMATS,
    *,
    data_dir: str | None = None,
    weights_dir: WeightsLocation = None,
    opset: int | None = None,
    verify: bool = True,
    max_accuracy_drop: float = exporter.MAX_ACCURACY_DROP,
    max_relative_error: float = exporter.MAX_RELATIVE_ERROR,
) -> ExportResult:
    """Export a stored version and redraw its card's export table in the same commit (zoo.exports.exporter.export
    says the rest)."""
    return exporter.export(ref, formats, data_dir=data_dir, weights_dir=weights_dir, opset=opset, verify=verify,
                           max_accuracy_drop=max_accuracy_drop, max_relative_error=max_relative_error,
                           rewrite=rewritten_card)
