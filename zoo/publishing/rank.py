"""One rank of a launched training run: `python -P -m zoo.publishing.rank REQUEST`, started by `launch_training`.

REQUEST is a JSON file of the run's `train` arguments and the file rank 0 writes its TrainResult to, for the process
that launched the run. A rank that fails with one of the zoo's errors says it in one line on stderr (the launcher
names the rank and that message as the run's cause) and exits 2 for the caller's mistake, 1 for a fault on disk.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from zoo.core.errors import ZooError
from zoo.core.reference import ModelRef
from zoo.publishing.runs import train
from zoo.store.atomic import replace_file
from zoo.store.versions import WeightsStore


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    arguments = request["train"]

    def resumed(epoch: int, epochs: int) -> None:
        print(f"resuming {arguments['name']} from its checkpoint after epoch {epoch} of {epochs}", file=sys.stderr)

    try:
        # The request's plain data made into the values train takes, here at the rank's edge.
        arguments["weights_dir"] = WeightsStore.at(arguments.get("weights_dir"))
        if arguments.get("parent") is not None:
            arguments["parent"] = ModelRef.parse(arguments["parent"])
        result = train(**arguments, on_resume=resumed)
    except ZooError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if error.caller_error else 1
    if result.rank == 0:
        text = json.dumps(result.to_dict())
        replace_file(Path(request["result"]), lambda handle: handle.write(text.encode("utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
