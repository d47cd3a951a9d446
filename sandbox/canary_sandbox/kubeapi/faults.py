"""Fault injection: make chosen requests fail, stall or lose their connection, from Python.

A test adds rules with :meth:`FaultInjector.add`; each request is checked against the rules in the order
they were added, and the first one that matches (and has hits left) is applied: an optional delay, then
either a cut connection or a ``Status`` error worded as the real server words it (an RBAC ``Forbidden``
naming the user, verb, resource, group and namespace; an optimistic-concurrency ``Conflict``; an
``InternalError`` as etcd timeouts produce; ``TooManyRequests`` with ``Retry-After``...). Watches can also be
ended at once (:meth:`FaultInjector.drop_watches`) or made to start with ``410 Expired``
(:meth:`FaultInjector.expire_next_watch`).

Deliberately not emulated: faults in the middle of a response body (other than cutting a watch), and
faults on the emulator's direct Python API, which is for test set-up and never fails on purpose.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from canary_sandbox.kubeapi.status import (
    REASON_BY_CODE,
    ApiError,
    already_exists,
    conflict,
    forbidden,
    generic,
    internal,
    not_found,
)

if TYPE_CHECKING:
    from canary_sandbox.kubeapi.store import ObjectStore

DEFAULT_USER = "system:serviceaccount:canary:canary-controller"
VERBS = ("GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "DELETE")
_VERB_ALIASES = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
}
_RBAC_VERBS = {
    "GET": "get",
    "LIST": "list",
    "WATCH": "watch",
    "POST": "create",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


def normalise_verb(verb: str) -> str:
    """``PATCH``, ``patch``, ``update`` -> the HTTP-style verb names the emulator uses.

    Raises:
        ValueError: not a verb the emulator serves.
    """
    upper = verb.upper()
    if upper in VERBS:
        return upper
    if verb.lower() in _VERB_ALIASES:
        return _VERB_ALIASES[verb.lower()]
    raise ValueError(f"unknown verb {verb!r}; use one of {', '.join(VERBS)}")


@dataclass(frozen=True)
class RequestInfo:
    """What a fault rule can match on, taken from the routed request.

    Attributes:
        verb: ``GET``, ``LIST``, ``WATCH``, ``POST``, ``PUT``, ``PATCH`` or ``DELETE``.
        path: the URL path without the query.
        group: API group (``""`` for core), None for non-resource URLs.
        plural: resource name, None for non-resource URLs.
        namespace: namespace from the URL, if any.
        name: object name from the URL, if any.
        subresource: ``status`` or None.
    """

    verb: str
    path: str
    group: str | None = None
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


@dataclass(eq=False)
class Fault:
    """One fault rule; returned by :meth:`FaultInjector.add`, so a test can read :attr:`hits`.

    Matching fields left as None match anything.
    """

    verb: str | None = None
    path_regex: re.Pattern[str] | None = None
    resource: str | None = None
    name: str | None = None
    namespace: str | None = None
    subresource: str | None = None
    status: int | None = None
    reason: str | None = None
    message: str | None = None
    times: int | None = None
    delay_seconds: float = 0.0
    drop_connection: bool = False
    user: str = DEFAULT_USER
    retry_after_seconds: int = 1
    hits: int = field(default=0, init=False)

    @property
    def remaining(self) -> int | None:
        """Hits left before the rule goes quiet (None: unlimited)."""
        return None if self.times is None else max(self.times - self.hits, 0)

    def matches(self, info: RequestInfo) -> bool:
        """Whether this rule applies to the request (ignoring hits left)."""
        if self.verb is not None and self.verb != info.verb:
            return False
        if self.path_regex is not None and not self.path_regex.search(info.path):
            return False
        if self.resource is not None and self.resource not in _spellings(info):
            return False
        if self.name is not None and self.name != info.name:
            return False
        if self.namespace is not None and self.namespace != info.namespace:
            return False
        return self.subresource is None or self.subresource == info.subresource

    def error(self, info: RequestInfo) -> ApiError | None:
        """The error to answer with, or None for a delay-only (or connection-dropping) rule."""
        if self.status is None:
            return None
        error = self._default_error(info)
        if self.reason:
            error.reason = self.reason
        if self.message:
            error.message = self.message
            error.causes = []
        return error

    def _default_error(self, info: RequestInfo) -> ApiError:
        code = self.status or 500
        group, plural, name = info.group or "", info.plural or "", info.name or ""
        if code == 403:
            resource = f"{plural}/{info.subresource}" if info.subresource else plural
            scope = f'in the namespace "{info.namespace}"' if info.namespace else "at the cluster scope"
            why = (
                f'User "{self.user}" cannot {_RBAC_VERBS.get(info.verb, info.verb.lower())} resource '
                f'"{resource}" in API group "{group}" {scope}'
            )
            return forbidden(group, plural, name, why)
        if code == 409:
            return already_exists(group, plural, name) if info.verb == "POST" else conflict(group, plural, name)
        if code == 404:
            return not_found(group, plural, name)
        if code == 500:
            return internal("etcdserver: request timed out")
        if code == 429:
            return ApiError(
                429,
                "TooManyRequests",
                "Too many requests, please try again later.",
                {"retryAfterSeconds": self.retry_after_seconds},
                headers={"Retry-After": str(self.retry_after_seconds)},
            )
        if code == 504:
            return generic(
                504, "Timeout: request did not complete within requested timeout - context deadline exceeded"
            )
        if code == 503:
            return generic(503, "the server is currently unable to handle the request")
        if code == 410:
            return generic(410, "The resourceVersion for the provided watch is too old.", reason="Expired")
        return generic(code, reason=REASON_BY_CODE.get(code))


def _spellings(info: RequestInfo) -> set[str]:
    if not info.plural:
        return set()
    qualified = f"{info.plural}.{info.group}" if info.group else info.plural
    return {info.plural, qualified}


class FaultInjector:
    """The fault rules of one emulator, plus the watch controls.

    Args:
        store: the emulator's object store (for the watch controls).
    """

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(
        self,
        *,
        verb: str | None = None,
        path_regex: str | re.Pattern[str] | None = None,
        resource: str | None = None,
        name: str | None = None,
        namespace: str | None = None,
        subresource: str | None = None,
        status: int | None = None,
        reason: str | None = None,
        message: str | None = None,
        times: int | None = None,
        delay_seconds: float = 0.0,
        drop_connection: bool = False,
        user: str = DEFAULT_USER,
        retry_after_seconds: int = 1,
    ) -> Fault:
        """Add a rule.

        Args:
            verb: ``GET``, ``LIST``, ``WATCH``, ``POST``, ``PUT``, ``PATCH``, ``DELETE`` (or the RBAC verb names).
            path_regex: searched in the URL path.
            resource: plural (``virtualservices``) or ``plural.group``.
            name: object name.
            namespace: namespace.
            subresource: ``status``.
            status: HTTP status to answer with; None for a delay-only rule.
            reason: overrides the ``Status.reason`` picked for ``status``.
            message: overrides the whole ``Status.message``.
            times: how many matching requests the rule hits (None: all of them).
            delay_seconds: wait this long before answering (or before failing).
            drop_connection: close the connection without any answer.
            user: the user named in a 403 message.
            retry_after_seconds: ``Retry-After`` of a 429.

        Returns:
            The rule, whose ``hits`` count the requests it was applied to.
        """
        if status is None and not delay_seconds and not drop_connection:
            raise ValueError("a fault needs a status, a delay or drop_connection")
        if status is not None and not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code, not {status}")
        pattern = re.compile(path_regex) if isinstance(path_regex, str) else path_regex
        fault = Fault(
            verb=normalise_verb(verb) if verb else None,
            path_regex=pattern,
            resource=resource,
            name=name,
            namespace=namespace,
            subresource=subresource,
            status=status,
            reason=reason,
            message=message,
            times=times,
            delay_seconds=delay_seconds,
            drop_connection=drop_connection,
            user=user,
            retry_after_seconds=retry_after_seconds,
        )
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove(self, fault: Fault) -> None:
        """Remove one rule (no error if it is already gone)."""
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear(self) -> None:
        """Remove every rule and cancel pending watch expiries."""
        with self._lock:
            self._faults.clear()
        with self._store.lock:
            self._store.expire_next_watches = 0

    @property
    def rules(self) -> list[Fault]:
        """The current rules, in matching order."""
        with self._lock:
            return list(self._faults)

    def take(self, info: RequestInfo) -> Fault | None:
        """The first matching rule with hits left, counting this hit; None when no rule applies."""
        with self._lock:
            for fault in self._faults:
                if (fault.remaining is None or fault.remaining > 0) and fault.matches(info):
                    fault.hits += 1
                    return fault
        return None

    def drop_watches(self, *, graceful: bool = False) -> None:
        """End every open watch now.

        Args:
            graceful: end the chunked stream properly (as an API server's watch timeout does) instead of
                cutting the TCP connection (as a restart or a load balancer does).
        """
        self._store.drop_watches(graceful=graceful)

    def expire_next_watch(self, times: int = 1) -> None:
        """Make the next ``times`` watches (of any resource) answer with a ``410 Expired`` ERROR event."""
        with self._store.lock:
            self._store.expire_next_watches += times
