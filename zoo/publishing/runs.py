"""Training and exporting a version with its model card: the trainer and the exporter hand the card to this layer.

The trainer knows nothing of cards and the exporter nothing of the card's text; here each is given the hook that
draws the card into a version before it is published (`card_before_publish`) or redraws its export table in the
export's own commit (`rewritten_card`).
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from zoo.cards.card import publish_card, rewritten_card
from zoo.cards.figures import Drawing
from zoo.exports import exporter
from zoo.training import trainer
from zoo.training.distributed import Topology, launch
from zoo.training.loops import ProgressCallback
from zoo.training.trainer import Publication, TrainResult


def card_before_publish(publication: Publication) -> None:
    """Draw the model card and its figures into a version being published, and record them in its manifest."""
    drawing = Drawing(publication.spec, publication.recipe, publication.manifest, publication.model,
                      publication.context)
    publication.manifest["card"] = publish_card(publication.folder, drawing)


def train(
    name: str,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    weights_dir: str | None = None,
    on_progress: ProgressCallback | None = None,
    parent: str | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    on_resume: Callable[[int, int], None] | None = None,
) -> TrainResult:
    """Train `name` and store a new version with its model card (zoo.training.trainer.train says the rest)."""
    return trainer.train(name, recipe, overrides, device=device, data_dir=data_dir, weights_dir=weights_dir,
                         on_progress=on_progress, parent=parent, resume=resume, checkpoint_every=checkpoint_every,
                         on_resume=on_resume, before_publish=card_before_publish)


def launch_training(
    topology: Topology,
    name: str,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    device: str = "auto",
    data_dir: str | None = None,
    weights_dir: str | None = None,
    parent: str | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
) -> TrainResult | None:
    """`train` on every rank of `topology`, each started as `python -P -m zoo.publishing.rank` through torchrun.

    Returns rank 0's result where rank 0 ran on this machine, else None (another node publishes); a failed rank
    raises DistributedRunError naming it and its error. A rank says on stderr when it resumes."""
    arguments = {"name": name, "recipe": recipe, "overrides": dict(overrides or {}), "device": device,
                 "data_dir": data_dir, "weights_dir": weights_dir, "parent": parent, "resume": resume,
                 "checkpoint_every": checkpoint_every}
    with tempfile.TemporaryDirectory(prefix="zoo-launch-") as folder:
        request, result = Path(folder) / "request.json", Path(folder) / "result.json"
        request.write_text(json.dumps({"train": arguments, "result": str(result)}), encoding="utf-8")
        sys.stderr.flush()
        launch(topology, "zoo.publishing.rank", [str(request)])
        if not result.is_file():
            return None
        return TrainResult.from_dict(json.loads(result.read_text(encoding="utf-8")))


def export(
    ref: str,
    formats: Sequence[str] = exporter.DEFAULT_FORMATS,
    opset: int | None = None,
    verify: bool = True,
    weights_dir: str | None = None,
    data_dir: str | None = None,
    max_accuracy_drop: float = exporter.MAX_ACCURACY_DROP,
    max_relative_error: float = exporter.MAX_RELATIVE_ERROR,
) -> dict[str, Any]:
    """Export a stored version and redraw its card's export table in the same commit (zoo.exports.exporter.export
    says the rest)."""
    return exporter.export(ref, formats, opset, verify, weights_dir, data_dir, max_accuracy_drop, max_relative_error,
                           rewrite=rewritten_card)
