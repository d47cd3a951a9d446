"""The work queue (controller/runtime/workqueue.py): client-go's de-duplication, timers, backoff and shutdown.

Timers run on a fake clock the tests advance; real time is only spent where a thread must block in get().
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import pytest

from controller.runtime.workqueue import WorkQueue
from tests.support.clock import FakeClock

Key = tuple[str, str]
A: Key = ("shop", "checkout")
B: Key = ("shop", "cart")
C: Key = ("billing", "invoices")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def queue(clock: FakeClock) -> WorkQueue[Key]:
    return WorkQueue(clock=clock)


def drain(queue: WorkQueue[Key]) -> list[Key]:
    """Take every queued key without blocking, handing each back at once."""
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def recorder(calls: list[tuple[Key, float, str]]) -> Callable[[Key, float, str], None]:
    """An on_dequeue that appends its arguments to ``calls``."""

    def record(key: Key, waited: float, reason: str) -> None:
        calls.append((key, waited, reason))

    return record


# De-duplication and order.


def test_a_queued_key_added_again_is_queued_once(queue: WorkQueue[Key]) -> None:
    queue.add(A)
    queue.add(B)
    queue.add(A)
    assert len(queue) == 2
    assert drain(queue) == [A, B]


def test_keys_leave_in_the_order_they_came(queue: WorkQueue[Key]) -> None:
    for key in (C, A, B):
        queue.add(key)
    assert drain(queue) == [C, A, B]


def test_urgent_adds_go_ahead_and_a_queued_key_moves_ahead_once(clock: FakeClock) -> None:
    # A person's pause must not wait behind thousands of timer passes (issue 18).
    queue: WorkQueue[Key] = WorkQueue(clock=clock, urgent_reasons=frozenset({"event"}))
    timers = [(f"ns-{index}", "p") for index in range(1000)]
    for key in timers:
        queue.add(key, "timer")
    queue.add(A, "event")
    queue.add(timers[500], "event")  # queued behind 500 others: it moves ahead
    queue.add(timers[500], "event")
    assert len(queue) == 1001
    order = drain(queue)
    assert order[:2] == [A, timers[500]]
    assert order[2:] == [key for key in timers if key != timers[500]], "the rest in order, each once"
    assert len(queue) == 0


def test_an_urgent_add_during_processing_is_queued_ahead_by_done(clock: FakeClock) -> None:
    calls: list[tuple[Key, float, str]] = []
    queue: WorkQueue[Key] = WorkQueue(clock=clock, urgent_reasons=frozenset({"event"}), on_dequeue=recorder(calls))
    queue.add(A, "timer")
    assert queue.get(timeout=0) == A
    queue.add(B, "timer")
    queue.add(A, "event")
    queue.done(A)
    assert drain(queue) == [A, B]
    assert [reason for _, _, reason in calls] == ["timer", "event", "timer"]


def test_an_urgent_add_after_a_timer_during_processing_still_goes_ahead(clock: FakeClock) -> None:
    calls: list[tuple[Key, float, str]] = []
    queue: WorkQueue[Key] = WorkQueue(clock=clock, urgent_reasons=frozenset({"event"}), on_dequeue=recorder(calls))
    queue.add(A, "timer")
    assert queue.get(timeout=0) == A
    queue.add(B, "timer")
    queue.add(A, "timer")  # its timer fires while it is processing
    queue.add(A, "event")  # then a person pauses it
    queue.done(A)
    assert drain(queue) == [A, B]
    assert [reason for _, _, reason in calls] == ["timer", "timer", "timer"], "the earliest add's reason is kept"


def test_a_key_taken_from_the_urgent_lane_is_not_handed_out_again_from_its_old_place(clock: FakeClock) -> None:
    queue: WorkQueue[Key] = WorkQueue(clock=clock, urgent_reasons=frozenset({"event"}))
    queue.add(A, "timer")
    queue.add(B, "timer")
    queue.add(B, "event")
    assert queue.get(timeout=0) == B
    assert queue.get(timeout=0) == A
    assert queue.get(timeout=0) is None, "B's old place is skipped while it is processing"
    queue.done(A)
    queue.done(B)
    queue.add(B, "timer")
    assert drain(queue) == [B]


def test_an_add_during_processing_is_queued_again_once_by_done(queue: WorkQueue[Key]) -> None:
    queue.add(A)
    assert queue.get(timeout=0) == A
    assert (len(queue), queue.processing) == (0, 1)
    queue.add(A)
    queue.add(A)
    # Not queued while it is processing: no other worker may take it.
    assert len(queue) == 0
    assert queue.get(timeout=0) is None
    queue.done(A)
    assert (len(queue), queue.processing) == (1, 0)
    assert queue.get(timeout=0) == A
    queue.done(A)
    assert queue.get(timeout=0) is None


def test_a_key_being_processed_is_handed_to_a_second_worker_only_after_done(queue: WorkQueue[Key]) -> None:
    queue.add(A)
    assert queue.get(timeout=0) == A  # this thread is the first worker
    queue.add(A)
    taken: list[Key | None] = []
    second = threading.Thread(target=lambda: taken.append(queue.get(timeout=2.0)), name="second-worker")
    second.start()
    try:
        time.sleep(0.05)
        assert second.is_alive(), f"the second worker was handed {taken} while the first processed it"
        queue.done(A)
    finally:
        second.join(timeout=2.0)
    assert taken == [A]
    assert queue.processing == 1
    queue.done(A)


def test_two_workers_never_process_one_key_at_once_and_no_add_is_lost(queue: WorkQueue[Key]) -> None:
    lock = threading.Lock()
    version = 0  # bumped before each add: the last pass must have seen the last one
    in_flight = 0
    most_in_flight = 0
    seen: list[int] = []

    def work() -> None:
        nonlocal in_flight, most_in_flight
        while (key := queue.get(timeout=2.0)) is not None:
            with lock:
                in_flight += 1
                most_in_flight = max(most_in_flight, in_flight)
                seen.append(version)
            time.sleep(0)
            with lock:
                in_flight -= 1
            queue.done(key)

    workers = [threading.Thread(target=work, name=f"worker-{i}") for i in range(2)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(300):
            with lock:
                version += 1
            queue.add(A)
        deadline = time.monotonic() + 2.0
        while (len(queue) or queue.processing) and time.monotonic() < deadline:
            time.sleep(0.001)
    finally:
        queue.shut_down()
        for worker in workers:
            worker.join(timeout=2.0)
    assert most_in_flight == 1
    assert seen
    assert seen[-1] == 300


def test_done_of_a_key_not_processing_changes_nothing(queue: WorkQueue[Key]) -> None:
    queue.done(A)
    assert (len(queue), queue.processing) == (0, 0)
    queue.add(A)
    queue.done(A)
    assert (len(queue), queue.processing) == (1, 0)
    assert drain(queue) == [A]


# Timers.


def test_add_after_keeps_the_earlier_timer_when_the_later_comes_second(queue: WorkQueue[Key], clock: FakeClock) -> None:
    queue.add_after(A, 10)
    queue.add_after(A, 20)
    assert queue.waiting == 1
    assert queue.next_due_in() == 10
    clock.advance(10)
    assert queue.fire_due() == 1
    assert queue.waiting == 0
    assert drain(queue) == [A]
    clock.advance(10)
    assert queue.fire_due() == 0


def test_add_after_moves_the_timer_earlier_when_the_earlier_comes_second(
    queue: WorkQueue[Key], clock: FakeClock
) -> None:
    queue.add_after(A, 20)
    queue.add_after(A, 5)
    assert queue.waiting == 1
    assert queue.next_due_in() == 5
    clock.advance(5)
    assert queue.fire_due() == 1
    assert drain(queue) == [A]
    clock.advance(15)
    assert queue.fire_due() == 0
    assert queue.next_due_in() is None
    assert len(queue) == 0


def test_fire_due_moves_only_the_due_timers_and_counts_them(queue: WorkQueue[Key], clock: FakeClock) -> None:
    queue.add_after(C, 3)
    queue.add_after(A, 1)
    queue.add_after(B, 2)
    assert queue.fire_due() == 0
    clock.advance(2)
    assert queue.fire_due() == 2
    assert (len(queue), queue.waiting) == (2, 1)
    assert queue.next_due_in() == 1
    assert drain(queue) == [A, B]
    clock.advance(5)
    assert queue.next_due_in() == 0  # overdue
    assert queue.fire_due() == 1
    assert drain(queue) == [C]


def test_add_after_without_a_delay_adds_now(queue: WorkQueue[Key]) -> None:
    queue.add_after(A, 0)
    queue.add_after(B, -1)
    assert (len(queue), queue.waiting) == (2, 0)
    assert drain(queue) == [A, B]


def test_a_timer_does_not_stop_an_add_and_its_firing_is_de_duplicated(queue: WorkQueue[Key], clock: FakeClock) -> None:
    queue.add_after(A, 5)
    queue.add(A)
    assert (len(queue), queue.waiting) == (1, 1)
    clock.advance(5)
    assert queue.fire_due() == 1
    assert (len(queue), queue.waiting) == (1, 0)
    assert drain(queue) == [A]


def test_a_timer_firing_while_its_key_is_processing_queues_it_after_done(
    queue: WorkQueue[Key], clock: FakeClock
) -> None:
    queue.add(A)
    assert queue.get(timeout=0) == A
    queue.add_after(A, 1)
    clock.advance(1)
    assert queue.fire_due() == 1
    assert len(queue) == 0
    queue.done(A)
    assert drain(queue) == [A]


def test_a_nan_delay_is_refused(queue: WorkQueue[Key]) -> None:
    with pytest.raises(ValueError, match="NaN"):
        queue.add_after(A, math.nan)


def test_re_arming_one_key_10000_times_keeps_the_heap_small(queue: WorkQueue[Key], clock: FakeClock) -> None:
    longest = 0
    for i in range(10_000):
        # Alternately earlier than every timer so far (a new heap entry) and later (ignored).
        queue.add_after(A, 20_000 - i if i % 2 else 30_000)
        longest = max(longest, len(queue._heap))
    assert queue.waiting == 1
    assert longest <= 3
    clock.advance(20_000)
    assert queue.fire_due() == 1
    assert len(queue._heap) == 0


def test_stale_heap_entries_are_skipped_and_compacted_with_many_keys(queue: WorkQueue[Key], clock: FakeClock) -> None:
    keys = [("ns", f"p{i}") for i in range(50)]
    for round_ in range(100):
        for key in keys:
            queue.add_after(key, 1000 - round_)
    assert queue.waiting == 50
    assert len(queue._heap) <= 3 * 50
    assert queue.next_due_in() == 901
    clock.advance(901)
    assert queue.fire_due() == 50
    assert sorted(drain(queue)) == sorted(keys)


# Rate limiting.


def test_retries_back_off_exponentially_up_to_the_cap(clock: FakeClock) -> None:
    queue: WorkQueue[Key] = WorkQueue(clock=clock, base_delay=0.005, max_delay=1.0)
    delays = [queue.add_rate_limited(A) for _ in range(10)]
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0, 1.0])
    assert queue.num_requeues(A) == 10
    assert queue.num_requeues(B) == 0
    assert queue.next_due_in() == pytest.approx(0.005)  # the earliest retry's timer
    queue.forget(A)
    assert queue.num_requeues(A) == 0
    assert queue.add_rate_limited(A) == pytest.approx(0.005)
    assert queue.num_requeues(A) == 1


def test_a_retry_waits_for_its_backoff_and_is_reported_as_a_retry(clock: FakeClock) -> None:
    dequeued: list[tuple[Key, float, str]] = []
    queue = WorkQueue(clock=clock, base_delay=2.0, on_dequeue=recorder(dequeued))
    assert queue.add_rate_limited(A) == 2.0
    clock.advance(1.9)
    assert queue.fire_due() == 0
    clock.advance(0.1)
    assert queue.fire_due() == 1
    clock.advance(0.5)
    assert queue.get(timeout=0) == A
    assert dequeued == [(A, 0.5, "retry")]


def test_huge_failure_counts_do_not_overflow(clock: FakeClock) -> None:
    queue: WorkQueue[Key] = WorkQueue(clock=clock, base_delay=1e-300, max_delay=300.0)
    for _ in range(2_000):
        delay = queue.add_rate_limited(A)
    assert delay == 300.0
    queue._failures[B] = 10**9
    assert queue.add_rate_limited(B) == 300.0
    assert queue.num_requeues(B) == 10**9 + 1


def test_negative_delays_are_refused() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        WorkQueue[Key](base_delay=-1.0)


# on_dequeue.


def test_on_dequeue_reports_the_wait_and_reason_of_the_earliest_add(clock: FakeClock) -> None:
    dequeued: list[tuple[Key, float, str]] = []
    queue = WorkQueue(clock=clock, on_dequeue=recorder(dequeued))
    queue.add(A, "event")
    clock.advance(3)
    queue.add(A, "resync")
    clock.advance(2)
    assert queue.get(timeout=0) == A
    assert dequeued == [(A, 5.0, "event")]
    # Added while processing: the wait counts from that add, through done, to the next get.
    clock.advance(1)
    queue.add(A, "source")
    clock.advance(2)
    queue.add(A, "event")
    queue.done(A)
    clock.advance(1)
    assert queue.get(timeout=0) == A
    assert dequeued[1] == (A, 3.0, "source")
    queue.done(A)
    # A timer's reason is its add's.
    queue.add_after(B, 4, reason="resync")
    clock.advance(4)
    queue.fire_due()
    clock.advance(1)
    assert queue.get(timeout=0) == B
    assert dequeued[2] == (B, 1.0, "resync")


def test_what_on_dequeue_raises_is_logged_and_swallowed(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    def explode(key: Key, waited: float, reason: str) -> None:
        raise RuntimeError("metrics are down")

    queue = WorkQueue(clock=clock, on_dequeue=explode)
    queue.add(A)
    with caplog.at_level(logging.ERROR, logger="controller"):
        assert queue.get(timeout=0) == A
    assert queue.processing == 1
    assert any("on_dequeue" in record.getMessage() and record.exc_info for record in caplog.records)


# Blocking, timeouts and shutdown.


def test_get_returns_none_when_its_timeout_passes(queue: WorkQueue[Key]) -> None:
    started = time.monotonic()
    assert queue.get(timeout=0.05) is None
    assert time.monotonic() - started >= 0.05


def timed_get(queue: WorkQueue[Key], results: list[tuple[Key | None, float]]) -> threading.Thread:
    """A started thread that waits in get() (at most 5 s) and appends what it got and how long it waited."""

    def run() -> None:
        started = time.monotonic()
        key = queue.get(timeout=5.0)
        results.append((key, time.monotonic() - started))

    thread = threading.Thread(target=run, name="getter")
    thread.start()
    return thread


def test_a_blocked_get_is_woken_by_an_add(queue: WorkQueue[Key]) -> None:
    results: list[tuple[Key | None, float]] = []
    getter = timed_get(queue, results)
    try:
        time.sleep(0.02)
        queue.add(A)
    finally:
        getter.join(timeout=6.0)
    [(key, waited)] = results
    assert key == A
    assert waited < 1.0


def test_shut_down_wakes_every_blocked_get_and_ignores_later_adds(queue: WorkQueue[Key]) -> None:
    results: list[tuple[Key | None, float]] = []
    getters = [timed_get(queue, results) for _ in range(3)]
    try:
        time.sleep(0.05)
        assert not results
        queue.shut_down()
    finally:
        for getter in getters:
            getter.join(timeout=6.0)
    assert [key for key, _ in results] == [None, None, None]
    assert all(waited < 1.0 for _, waited in results), f"not woken by shut_down: {results}"
    assert queue.shutting_down
    queue.add(A)
    queue.add_after(B, 1)
    queue.add_rate_limited(C)
    assert (len(queue), queue.waiting) == (0, 0)
    started = time.monotonic()
    assert queue.get(timeout=1.0) is None
    assert time.monotonic() - started < 0.5


def test_shut_down_drops_queued_keys_and_timers_and_lets_workers_finish(queue: WorkQueue[Key]) -> None:
    queue.add(A)
    queue.add(B)
    assert queue.get(timeout=0) == A
    queue.add(A)
    queue.add_after(C, 5)
    queue.shut_down()
    assert (len(queue), queue.processing, queue.waiting) == (0, 1, 0)
    assert queue.next_due_in() is None
    assert queue.get(timeout=0) is None
    queue.done(A)
    assert (len(queue), queue.processing) == (0, 0)


def test_sizes_count_queued_processing_and_waiting_keys_apart(queue: WorkQueue[Key]) -> None:
    assert (len(queue), queue.processing, queue.waiting) == (0, 0, 0)
    queue.add(A)
    queue.add(B)
    queue.add_after(C, 1)
    assert queue.get(timeout=0) == A
    assert (len(queue), queue.processing, queue.waiting) == (1, 1, 1)
    assert not queue.shutting_down
