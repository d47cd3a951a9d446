"""When a rollout next needs a pass if nothing else happens: the timers of the work queue.

The daemon gives a rollout a pass when a watch event concerns it (its policy, route, canary workload or
status changed), on a periodic full resync, and when a timer set from here runs out. A timer covers what
no event announces: the next analysis look, the end of the step, a progress deadline. A rollout that only
an event can move (ended, or paused by a person or by drift) gets no timer, so it costs nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.core.policy import CanaryPolicy
from controller.core.status import TERMINAL_PHASES, Phase, RolloutStatus

AFTER_SECONDS = 0.05
"""A timer runs this long after its moment, so the pass finds the moment passed (clocks compare to the microsecond)."""


def next_pass_in(policy: CanaryPolicy, status: RolloutStatus, now: datetime, *, idle_seconds: float) -> float | None:
    """Seconds until the rollout needs its next pass without an event; None when only an event can move it.

    Args:
        policy: the rollout's policy.
        status: its status after the pass.
        now: the pass's time.
        idle_seconds: the cadence of a rollout under way without analysis (the controller's tick), and of
            alerts still to deliver.
    """
    if status.pending_alerts or status.write_pending:
        return idle_seconds  # an alert to retry, a route write to repeat
    if status.phase in TERMINAL_PHASES or status.phase == Phase.PAUSED:
        return None
    analysis = policy.spec.analysis
    interval = analysis.interval_seconds if analysis is not None else idle_seconds
    moments: list[datetime] = []
    if status.last_analysis_at is not None and analysis is not None:
        moments.append(status.last_analysis_at + timedelta(seconds=interval))
    if status.phase == Phase.PROGRESSING and status.step_started_at is not None:
        moments.append(status.step_started_at + timedelta(seconds=policy.spec.schedule.step_duration_seconds))
    deadline = timedelta(seconds=policy.spec.workload.progress_deadline_seconds)
    if status.phase == Phase.PENDING and status.pending_since is not None:
        moments.append(status.pending_since + deadline)
    if status.data_plane_since is not None:
        moments.append(status.data_plane_since + deadline)
    # A moment already past was acted on by this pass, or cannot be yet (a step's end whose final look waits
    # for data): the cadence covers it, so a pass that changed nothing is never repeated at once.
    future = [(moment - now).total_seconds() for moment in moments if moment > now]
    return min([interval, *(seconds + AFTER_SECONDS for seconds in future)])
