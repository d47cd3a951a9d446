"""A rate-limited, de-duplicating, delaying work queue: what the daemon's workers take policy keys from.

Watch events and timers add keys (``(namespace, name)`` in the controller); worker threads take them with
:meth:`WorkQueue.get` and hand them back with :meth:`WorkQueue.done`. The semantics are those of client-go's
``k8s.io/client-go/util/workqueue`` (``queue.go``, ``delaying_queue.go``, ``default_rate_limiters.go``):

- A key is queued at most once: adding a key that is already queued does nothing. A key that is being
  processed is never handed to a second worker; adding it meanwhile marks it dirty, and :meth:`~WorkQueue.done`
  queues it again, so an add during processing is never lost. Keys leave the queue in the order they came,
  except that adds whose reason is one of ``urgent_reasons`` go ahead of the others (a key queued already
  moves ahead when such an add comes): a person's pause or edit is not queued behind thousands of timers.
  This lane is ours; client-go's queue has one order.
- :meth:`~WorkQueue.add_after` keeps one timer per key, the earliest: adding it again with a later time keeps
  the earlier one, with an earlier time moves it earlier. A timer does not stop :meth:`~WorkQueue.add`; when it
  fires, the key is added like any other, de-duplicated as usual. Nothing here runs a thread of its own: the
  daemon calls :meth:`~WorkQueue.fire_due` from an APScheduler job, and :meth:`~WorkQueue.next_due_in` says
  when the next timer is due.
- :meth:`~WorkQueue.add_rate_limited` backs off per key, exponentially (client-go's
  ItemExponentialFailureRateLimiter): the n-th retry since the last :meth:`~WorkQueue.forget` waits
  ``base_delay * 2**n`` seconds, at most ``max_delay``.
- After :meth:`~WorkQueue.shut_down`, adds are ignored, queued keys and timers are dropped and
  :meth:`~WorkQueue.get` returns None at once, waking every worker that waits in it. (client-go drains the
  queue first; the daemon persists before it acts, so dropping loses nothing and stops sooner.)

One :class:`threading.Condition` guards all the state, so any number of workers may call :meth:`~WorkQueue.get`
at once. Adding, taking and handing back a key cost O(1); timers cost O(log n) in a heap with lazy deletion
(a timer moved earlier leaves its old entry behind, skipped when it surfaces, and the heap is rebuilt when such
stale entries outnumber the live ones twice over, so re-arming one key's timer never grows it).
"""

from __future__ import annotations

import heapq
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger("controller")

K = TypeVar("K", bound=Hashable)

# 2.0 ** 1023 is the largest power of two a float holds: a higher failure count cannot raise the backoff
# further (it is already past any max_delay), and 2.0 ** 1024 would raise OverflowError.
_MAX_BACKOFF_EXPONENT = 1023


class WorkQueue(Generic[K]):
    """A work queue of keys with client-go's semantics (see the module's docstring).

    Args:
        clock: the time, in seconds, of timers and of the wait reported to ``on_dequeue`` (a monotonic clock;
            a test passes a fake one). :meth:`get`'s timeout is real time whatever the clock.
        base_delay: the first retry's delay in :meth:`add_rate_limited`, in seconds.
        max_delay: the longest retry delay, in seconds.
        on_dequeue: called by :meth:`get` (outside the lock) with the key it returns, the seconds that key
            waited since the earliest add since it last left the queue, and that add's reason ("event",
            "timer", "retry", ...). What it raises is logged and swallowed.
        urgent_reasons: the reasons of adds that go ahead of the other queued keys.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        base_delay: float = 0.005,
        max_delay: float = 300.0,
        on_dequeue: Callable[[K, float, str], None] | None = None,
        urgent_reasons: frozenset[str] = frozenset(),
    ) -> None:
        if not base_delay >= 0 or not max_delay >= 0:
            raise ValueError(f"base_delay and max_delay must be >= 0 (got {base_delay!r} and {max_delay!r})")
        self._clock = clock
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._on_dequeue = on_dequeue
        self._urgent_reasons = urgent_reasons
        self._cond = threading.Condition()
        self._shutting_down = False
        # The ready keys: every one is in _dirty and none in _processing. The lanes hold them in order, the
        # urgent one first; an entry whose key is no longer in _ready (taken from the other lane) is skipped.
        self._ready: set[K] = set()
        self._queue: deque[K] = deque()
        self._urgent: deque[K] = deque()
        self._in_urgent: set[K] = set()
        # Processing keys added again urgently: done() queues them in the urgent lane whatever came first.
        self._urgent_after_done: set[K] = set()
        # Keys to be processed: the queued ones, and the processing ones added again (queued again by done).
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # For each dirty key, the time and reason of its earliest add since it last left the queue.
        self._first_added: dict[K, tuple[float, str]] = {}
        # Timers: the heap holds (ready_at, sequence, key); an entry is live while _waiting[key] names its
        # sequence, stale once the key's timer moved earlier or fired. _waiting: key -> (ready_at, seq, reason).
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, tuple[float, int, str]] = {}
        self._sequence = 0
        # add_rate_limited's failures per key, since its last forget().
        self._failures: dict[K, int] = {}

    # Adding.

    def add(self, key: K, reason: str = "event") -> None:
        """Queue ``key`` unless it is queued already; a key being processed is queued again by :meth:`done`."""
        with self._cond:
            self._add_locked(key, reason)

    def _add_locked(self, key: K, reason: str) -> None:
        if self._shutting_down:
            return
        urgent = reason in self._urgent_reasons
        if key in self._dirty:
            if urgent and key in self._ready and key not in self._in_urgent:
                self._urgent.append(key)  # already queued: it moves ahead (its place behind is skipped)
                self._in_urgent.add(key)
            elif urgent and key in self._processing:
                self._urgent_after_done.add(key)
            return
        self._dirty.add(key)
        self._first_added[key] = (self._clock(), reason)
        if key in self._processing:
            if urgent:
                self._urgent_after_done.add(key)
            return
        self._enqueue_locked(key, urgent=urgent)

    def _enqueue_locked(self, key: K, *, urgent: bool) -> None:
        self._ready.add(key)
        if urgent:
            self._urgent.append(key)
            self._in_urgent.add(key)
        else:
            self._queue.append(key)
        self._cond.notify()

    def add_after(self, key: K, delay: float, reason: str = "timer") -> None:
        """Add ``key`` in ``delay`` seconds (now if ``delay <= 0``); of two timers of one key the earlier wins.

        Raises:
            ValueError: ``delay`` is NaN.
        """
        if math.isnan(delay):
            raise ValueError("delay must be a number of seconds, not NaN")
        with self._cond:
            if self._shutting_down:
                return
            if delay <= 0:
                self._add_locked(key, reason)
                return
            ready_at = self._clock() + delay
            current = self._waiting.get(key)
            if current is not None and current[0] <= ready_at:
                return
            self._sequence += 1
            self._waiting[key] = (ready_at, self._sequence, reason)
            heapq.heappush(self._heap, (ready_at, self._sequence, key))
            self._compact_locked()

    def add_rate_limited(self, key: K) -> float:
        """Add ``key`` after its backoff (reason "retry") and count one more failure; returns the delay.

        The delay is ``base_delay * 2**failures`` (the failures counted before this call), at most
        ``max_delay``.
        """
        with self._cond:
            failures = self._failures.get(key, 0)
            self._failures[key] = failures + 1
            delay = min(self._base_delay * 2.0 ** min(failures, _MAX_BACKOFF_EXPONENT), self._max_delay)
            self.add_after(key, delay, reason="retry")  # the Condition's lock is reentrant
        return delay

    def forget(self, key: K) -> None:
        """Reset ``key``'s failure count: its next :meth:`add_rate_limited` waits ``base_delay`` again."""
        with self._cond:
            self._failures.pop(key, None)

    def num_requeues(self, key: K) -> int:
        """How many times ``key`` went through :meth:`add_rate_limited` since its last :meth:`forget`."""
        with self._cond:
            return self._failures.get(key, 0)

    # Taking and handing back.

    def get(self, timeout: float | None = None) -> K | None:
        """The next queued key, now processing; waits for one at most ``timeout`` seconds (None: no limit).

        Returns None when the timeout passes, and at once after :meth:`shut_down`. The caller must hand the
        key back with :meth:`done`.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._ready and not self._shutting_down:
                if deadline is None:
                    self._cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._shutting_down:
                return None
            while True:
                lane = self._urgent if self._urgent else self._queue
                key = lane.popleft()
                if lane is self._urgent:
                    self._in_urgent.discard(key)
                if key in self._ready:
                    break
            self._ready.discard(key)
            self._dirty.discard(key)
            self._processing.add(key)
            added_at, reason = self._first_added.pop(key)
            waited = self._clock() - added_at
        if self._on_dequeue is not None:
            try:
                self._on_dequeue(key, waited, reason)
            except Exception:
                log.exception("the work queue's on_dequeue callback failed for %r", key)
        return key

    def done(self, key: K) -> None:
        """``key`` is processed; if it was added meanwhile it is queued again. A no-op if it is not processing."""
        with self._cond:
            if key not in self._processing:
                return
            self._processing.discard(key)
            urgent = key in self._urgent_after_done
            self._urgent_after_done.discard(key)
            if key in self._dirty:
                self._enqueue_locked(key, urgent=urgent)

    # Timers.

    def fire_due(self) -> int:
        """Add every key whose timer is due (with its timer's reason); returns how many timers fired."""
        fired = 0
        with self._cond:
            now = self._clock()
            while True:
                self._drop_stale_top_locked()
                if not self._heap or self._heap[0][0] > now:
                    break
                _, _, key = heapq.heappop(self._heap)
                _, _, reason = self._waiting.pop(key)
                self._add_locked(key, reason)
                fired += 1
            self._compact_locked()
        return fired

    def next_due_in(self) -> float | None:
        """Seconds until the earliest timer is due (0 if it is overdue), or None if there is no timer."""
        with self._cond:
            self._drop_stale_top_locked()
            if not self._heap:
                return None
            return max(0.0, self._heap[0][0] - self._clock())

    def _is_live(self, entry: tuple[float, int, K]) -> bool:
        current = self._waiting.get(entry[2])
        return current is not None and current[1] == entry[1]

    def _drop_stale_top_locked(self) -> None:
        while self._heap and not self._is_live(self._heap[0]):
            heapq.heappop(self._heap)

    def _compact_locked(self) -> None:
        live = len(self._waiting)
        if len(self._heap) - live > 2 * live:
            self._heap = [(ready_at, seq, key) for key, (ready_at, seq, _) in self._waiting.items()]
            heapq.heapify(self._heap)

    # Shutting down and size.

    def shut_down(self) -> None:
        """Stop: later adds are ignored, queued keys and timers are dropped, every waiting :meth:`get` returns."""
        with self._cond:
            self._shutting_down = True
            self._ready.clear()
            self._queue.clear()
            self._urgent.clear()
            self._in_urgent.clear()
            self._urgent_after_done.clear()
            self._dirty.clear()
            self._first_added.clear()
            self._heap.clear()
            self._waiting.clear()
            self._cond.notify_all()

    @property
    def shutting_down(self) -> bool:
        """Whether :meth:`shut_down` was called."""
        with self._cond:
            return self._shutting_down

    def __len__(self) -> int:
        """The keys queued (ready to be taken): not those being processed, nor those waiting for a timer."""
        with self._cond:
            return len(self._ready)

    @property
    def processing(self) -> int:
        """The keys being processed (taken by :meth:`get`, not yet :meth:`done`)."""
        with self._cond:
            return len(self._processing)

    @property
    def waiting(self) -> int:
        """The keys with a pending timer."""
        with self._cond:
            return len(self._waiting)
