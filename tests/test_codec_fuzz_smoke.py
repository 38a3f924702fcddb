"""Keep the codec fuzz target working: run its check on the seeds and a few mutations."""

from __future__ import annotations

import importlib.util
import os
import random

import pytest

from durable_core import _impl

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(
    "c" not in _impl.implementations("decode", "durable_core._codec_py"),
    reason="the fuzz target compares the C extension with the twin",
)
def test_fuzz_target_runs_clean_on_a_short_mutation_run() -> None:
    spec = importlib.util.spec_from_file_location(
        "fuzz_codec", os.path.join(HERE, "fuzz", "fuzz_codec.py")
    )
    assert spec is not None and spec.loader is not None
    fuzz = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fuzz)
    pool = fuzz.seeds()
    for data in pool:
        fuzz.check(data)
    rng = random.Random(5)
    for _ in range(300):
        fuzz.check(fuzz.mutate(rng, rng.choice(pool), pool))
    # and it does report a disagreement
    with pytest.raises(fuzz.Finding):
        fuzz.C["decode"] = lambda data, lenient=False: []
        fuzz.check(b"\x00garbage")
