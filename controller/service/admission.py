"""Refusing CanaryPolicy resources that reach beyond what the operator allows, without harming any other.

``screen`` takes the merged snapshot of the policy sources and turns every CanaryPolicy resource that
``controller.core.admission.refusals`` refuses into a ``SourceProblem`` (reason ``PolicyRefused``, the
message naming each field at fault): the refused policy gets no pass, so it never queries anything or
sends anything, and every other policy runs as before. File policies are the operator's own and pass
untouched.

``mark_problem`` writes what a problem says into the CanaryPolicy's ``Ready`` condition (``False``, the
problem's reason and message), keeping the rest of its status: a rollout that was under way stays as it
was, frozen, until the policy is fixed; its next pass then sets ``Ready`` from its phase again.
"""

from __future__ import annotations

import logging
from datetime import datetime

from controller.core.admission import REFUSED_REASON, TenantRules, refusals
from controller.core.status import Condition
from controller.errors import CanaryError, ConflictError
from controller.ports import PolicyRef, PolicySnapshot, SourcedPolicy, SourceProblem, StatusStore

log = logging.getLogger(__name__)


def screen(snapshot: PolicySnapshot, rules: TenantRules) -> PolicySnapshot:
    """``snapshot`` with the CanaryPolicy resources ``rules`` refuse moved from policies to problems."""
    kept: list[SourcedPolicy] = []
    refused: list[SourceProblem] = []
    for sourced in snapshot.policies:
        found = refusals(sourced.policy, rules) if sourced.ref.source == "crd" else []
        if not found:
            kept.append(sourced)
            continue
        ref = sourced.ref
        refused.append(
            SourceProblem(
                source=ref.source,
                location=f"{ref.namespace}/{ref.name}",
                message="refused: " + "; ".join(str(refusal) for refusal in found),
                namespace=ref.namespace,
                name=ref.name,
                reason=REFUSED_REASON,
            )
        )
    if not refused:
        return snapshot
    return PolicySnapshot(policies=tuple(kept), problems=(*snapshot.problems, *refused))


def mark_problem(store: StatusStore, problem: SourceProblem, *, now: datetime, tries: int = 3) -> bool:
    """Set the CanaryPolicy's ``Ready`` condition to ``False`` with the problem's reason and message.

    Returns:
        True when written; False when the problem names no resource, or the write failed (logged: the
        Event still tells the author, and the next new problem writes again).
    """
    if problem.source != "crd" or not problem.namespace or not problem.name:
        return False
    ref = PolicyRef(problem.namespace, problem.name, source="crd")
    for _ in range(tries):
        try:
            loaded = store.load(policy=ref)
            status = loaded.status
            previous = next((c for c in status.conditions if c.type == "Ready"), None)
            changed = previous is None or previous.status != "False"
            ready = Condition(
                type="Ready",
                status="False",
                reason=problem.reason,
                message=problem.message,
                last_transition_time=now if changed or previous is None else previous.last_transition_time,
            )
            others = [c for c in status.conditions if c.type != "Ready"]
            store.save(
                policy=ref,
                status=status.model_copy(update={"conditions": [ready, *others]}),
                version=loaded.version,
            )
            return True
        except ConflictError:
            continue
        except CanaryError as exc:
            log.warning("could not write the Ready condition of %s/%s: %s", ref.namespace, ref.name, exc)
            return False
    log.warning("could not write the Ready condition of %s/%s: it kept changing", ref.namespace, ref.name)
    return False
