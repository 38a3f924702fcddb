"""Timer wheel against a sorted-list model: random adds, cancels and advances by small and
huge steps, for the C type and its twin."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from conftest import both

RANGE = 1 << 42
INT64_MAX = (1 << 63) - 1

# deltas around "now": mostly close (same or neighbouring slots), some across levels
DELTAS = st.one_of(
    st.integers(-70, 70),
    st.integers(-5_000, 300_000),
    st.integers(0, RANGE).map(lambda x: x // 3),
    st.sampled_from([0, 1, 63, 64, 65, 4095, 4096, 4097, 262_144, 1 << 24, 1 << 30, 1 << 36]),
)
STEPS = st.one_of(
    st.integers(0, 70),
    st.integers(0, 5_000),
    st.sampled_from([64, 4096, 262_144, 1 << 24, 1 << 30, 1 << 36, 1 << 41]),
)


def firing_ms(start: int, res: int, deadline: int) -> int:
    if deadline <= start:
        return start
    return start + -((start - deadline) // res) * res


def make_machine(TW: Any) -> type[RuleBasedStateMachine]:
    class WheelModel(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.pending: list[tuple[int, int, int, Any]] = []  # (deadline, seq, handle, item)
            self.dead_handles: list[int] = []
            self.seq = 0

        @initialize(
            res=st.sampled_from([1, 1, 1, 3, 64, 1000]),
            start=st.one_of(st.just(0), st.integers(-(10**12), 10**13)),
        )
        def setup(self, res: int, start: int) -> None:
            self.res, self.start, self.now = res, start, start
            self.w = TW(res, start)

        def _max_deadline(self) -> int:
            return min(self.start + (RANGE - 1) * self.res, INT64_MAX)

        @rule(delta=DELTAS, copies=st.integers(1, 3))
        def add(self, delta: int, copies: int) -> None:
            d = self.now + delta
            for _ in range(copies):
                item = ("item", self.seq)
                if d > self._max_deadline():
                    with pytest.raises(OverflowError):
                        self.w.add(d, item)
                    return
                h = self.w.add(d, item)
                self.pending.append((d, self.seq, h, item))
                self.seq += 1

        @precondition(lambda self: self.pending)
        @rule(i=st.integers(0, 10**6))
        def cancel(self, i: int) -> None:
            entry = self.pending.pop(i % len(self.pending))
            assert self.w.cancel(entry[2]) is True
            self.dead_handles.append(entry[2])

        @precondition(lambda self: self.dead_handles)
        @rule(i=st.integers(0, 10**6))
        def cancel_dead(self, i: int) -> None:
            assert self.w.cancel(self.dead_handles[i % len(self.dead_handles)]) is False

        @rule(step=STEPS)
        def advance(self, step: int) -> None:
            now = min(self.now + step, INT64_MAX)
            self._advance_to(now)

        @precondition(lambda self: self.pending)
        @rule()
        def advance_to_next_deadline(self) -> None:
            nd = self.w.next_deadline()
            assert nd is not None
            got = self._advance_to(max(nd, self.now))
            assert got, "advance(next_deadline()) fired nothing"

        @rule()
        def clear_sometimes(self) -> None:
            if self.seq % 7:  # rarely: it empties the model
                return
            assert self.w.clear() == len(self.pending)
            self.dead_handles.extend(e[2] for e in self.pending)
            self.pending = []

        @rule()
        def advance_past_the_range(self) -> None:
            if self.seq % 5:
                return
            self._advance_to(max(self.now, min(self.start + RANGE * self.res, INT64_MAX)))

        @rule(back=st.integers(1, 1000))
        def advance_backwards(self, back: int) -> None:
            if self.now - back < self.start:
                return
            with pytest.raises(ValueError):
                self.w.advance(self.now - back)

        def _advance_to(self, now: int) -> list[Any]:
            got = self.w.advance(now)
            self.now = now
            due = [e for e in self.pending if firing_ms(self.start, self.res, e[0]) <= now]
            due.sort(key=lambda e: (e[0], e[1]))
            assert got == [e[3] for e in due]
            for e in due:
                assert e[0] <= now  # never early
            fired = {e[1] for e in due}
            self.pending = [e for e in self.pending if e[1] not in fired]
            self.dead_handles.extend(e[2] for e in due)
            return got

        @invariant()
        def length_and_next_deadline(self) -> None:
            if not hasattr(self, "w"):
                return
            assert len(self.w) == len(self.pending)
            if self.pending:
                expect = min(firing_ms(self.start, self.res, e[0]) for e in self.pending)
                assert self.w.next_deadline() == expect
            else:
                assert self.w.next_deadline() is None

    return WheelModel


@pytest.mark.parametrize("TW", both("TimerWheel", "durable_core._timer_py"))
def test_wheel_matches_sorted_model(TW: Any) -> None:
    run_state_machine_as_test(
        make_machine(TW),
        settings=settings(
            max_examples=150,
            stateful_step_count=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
