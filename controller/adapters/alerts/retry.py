"""Delivery with retries: ``deliver`` sends one message to one sink, retrying what can succeed later.

Retries use exponential backoff with full jitter, bounded in attempts and in total time; the result is a
``DeliveryResult`` and ``deliver`` never raises. A timeout after the request was sent may mean it was
delivered: receivers of the generic webhook dedupe retries by ``X-Canary-Delivery``; Slack, Teams and
Discord cannot, so a rare duplicate is possible there.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Protocol

from controller.core.alerts import AlertMessage
from controller.errors import AlertDeliveryError
from controller.ports import DeliveryResult

log = logging.getLogger(__name__)


class AlertSink(Protocol):
    """Somewhere an alert can be sent."""

    @property
    def name(self) -> str:
        """Short name of the kind of sink, for logs and outcomes (``slack``, ``webhook``...)."""
        ...

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Deliver ``message`` once (no retry).

        Args:
            message: the alert.
            timeout: an upper bound in seconds on each phase of the request (connect, write, read), below
                the client's own timeouts; None keeps the client's.

        Raises:
            AlertDeliveryError: not delivered; ``retryable`` says whether trying again can help.
        """
        ...


def deliver(
    sink: AlertSink,
    message: AlertMessage,
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    deadline_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryResult:
    """Send ``message`` to ``sink``, retrying retryable failures; never raises.

    The wait before retry ``n`` (1-based) is ``rand() * min(max_delay, base_delay * 2 ** (n - 1))`` ("full
    jitter"), raised to the service's ``Retry-After`` (capped at ``max_delay``) when it sent one. Delivery
    stops at the first success, a non-retryable failure, the last attempt, or when the next wait would end
    past ``deadline_seconds`` after the start. Each attempt's request timeout is lowered to the time left, so
    the whole delivery stays within the deadline (plus the time one phase of a request may overrun).

    Args:
        sink: where to send.
        message: the alert.
        attempts: most requests to make (at least 1).
        base_delay: seconds of the first backoff step.
        max_delay: longest single wait.
        deadline_seconds: bound on the whole delivery, waits included.
        sleep: waits (injected by tests).
        rand: a number in [0, 1) (injected by tests).
        clock: monotonic seconds (injected by tests).

    Returns:
        The outcome: sent or failed, attempts made, the last error, the time spent.
    """
    start = clock()
    made = 0
    error: str | None = None
    retryable = False
    for attempt in range(1, max(1, attempts) + 1):
        remaining = deadline_seconds - (clock() - start)
        if remaining <= 0:
            break
        made = attempt
        try:
            sink.send(message, timeout=remaining)
        except AlertDeliveryError as exc:
            error, retryable = str(exc), exc.retryable
            if not retryable or attempt >= attempts:
                break
            delay = rand() * min(max_delay, base_delay * 2 ** (attempt - 1))
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, max_delay))
            if clock() - start + delay >= deadline_seconds:
                error += f" (gave up: the next attempt would start past the {deadline_seconds:g}s deadline)"
                break
            log.warning(
                "alert %s to %s failed (attempt %d of %d), retrying in %.2fs: %s",
                message.name,
                sink.name,
                attempt,
                attempts,
                delay,
                error,
                extra=_log_fields(message, error),
            )
            sleep(delay)
        except Exception as exc:  # a bug in a sink must not break the caller's loop
            error, retryable = f"{sink.name} sink failed unexpectedly: {type(exc).__name__}", False
            log.exception("alert %s to %s: unexpected error", message.name, sink.name)
            break
        else:
            duration = clock() - start
            log.info(
                "alert %s (%s) sent to %s in %.2fs (%d attempt%s)",
                message.name,
                message.state,
                sink.name,
                duration,
                attempt,
                "" if attempt == 1 else "s",
                extra=_log_fields(message, None),
            )
            return DeliveryResult(
                sink=sink.name, result="sent", attempts=attempt, error=None, duration_seconds=duration
            )
    duration = clock() - start
    if error is None:
        error = f"{sink.name} sink: no attempt made within the {deadline_seconds:g}s deadline"
        retryable = True
    log.warning(
        "alert %s (%s) not delivered to %s after %d attempt%s in %.2fs: %s",
        message.name,
        message.state,
        sink.name,
        made,
        "" if made == 1 else "s",
        duration,
        error,
        extra=_log_fields(message, error),
    )
    return DeliveryResult(
        sink=sink.name, result="failed", attempts=made, error=error, duration_seconds=duration, retryable=retryable
    )


def _log_fields(message: AlertMessage, error: str | None) -> dict[str, object]:
    fields: dict[str, object] = {"policy": message.policy, "namespace": message.namespace, "run_id": message.run_id}
    if error is not None:
        fields["error"] = error
    return fields
