"""How the files in ``tests/data/v1`` were made (kept as a record; do not re-run).

They were written by the codec and engine as they were before trailing fields and
``PatchMarker`` existed, so they pin what already-stored histories look like. Re-running this
script now would capture the current format instead, which would defeat the test.

    python tests/data/make_v1_fixtures.py
"""

from __future__ import annotations

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import compat_orchestrations as co  # noqa: E402
from codec_strategies import activity_chain, sample_history  # noqa: E402
from engine_driver import Driver  # noqa: E402

from durable_core import history as h  # noqa: E402
from durable_core.engine import OrchestrationExecutor  # noqa: E402

OUT = os.path.join(HERE, "v1")


class Recorder:
    """An executor proxy that notes how many new events each episode of ``inst`` had."""

    def __init__(self, ex: OrchestrationExecutor) -> None:
        self.ex = ex
        self.converter = ex.converter
        self.episodes: list[tuple[int, int]] = []

    def execute(self, iid: str, old: list, new: list):  # noqa: ANN201
        res = self.ex.execute(iid, old, new)
        if iid == "inst":
            self.episodes.append((len(new), len(res.new_history)))
        return res


def write_events(name: str, events: list) -> None:
    with open(os.path.join(OUT, f"{name}.dch"), "wb") as f:
        f.write(h.encode(events))
    with open(os.path.join(OUT, f"{name}.events"), "w", encoding="utf-8") as f:
        for ev in events:
            f.write(repr(ev) + "\n")


def record(name: str, orch: str, input, *, batch: bool = True, events=()) -> None:  # noqa: ANN001
    rec = Recorder(OrchestrationExecutor(co.registry()))
    d = Driver(rec, co.activities(), batch=batch)  # type: ignore[arg-type]
    d.start(orch, input)
    d.run()
    for ev_name, data in events:
        d.raise_event(ev_name, data)
    write_events(name, d.history)
    with open(os.path.join(OUT, f"{name}.json"), "w", encoding="utf-8") as f:
        json.dump({"orchestrator": orch, "episodes": rec.episodes,
                   "status": None if d.completion is None else int(d.completion.status)}, f)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    write_events("sample", sample_history())
    write_events("activity_chain", activity_chain(3))
    record("engine_chain", "chain", 4)
    record("engine_fan", "fan", 5, batch=False)
    record("engine_fan_fail", "fan_fail", None, batch=False)
    record("engine_approval", "approval", None, events=[("approve", {"by": "ann"})])
    record("engine_parent", "parent", None)


if __name__ == "__main__":
    main()
