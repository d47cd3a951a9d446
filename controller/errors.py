"""The project's exceptions.

::

    CanaryError                      root; never raised itself
    +-- PolicyError                  a policy is invalid (lint's problems); retrying cannot help
    +-- TargetError                  the target object cannot be used
    |   +-- TargetNotFoundError      no object of that kind/name/namespace; retry helps once it exists
    |   +-- RouteResolutionError     route or destinations cannot be resolved; retrying the same
    |                                object cannot help, an edited object may
    +-- ApiError                     a Kubernetes API call failed (``code``: HTTP status, 0 = no answer)
        +-- ConflictError            409, or a failed JSON-patch test: re-read and decide again
        +-- ForbiddenError           403: the message names the missing RBAC permission; retrying
                                     cannot help until RBAC changes
        +-- NotFoundError            404
        +-- UnavailableError         5xx, timeouts, refused connections: retrying helps
    +-- KubeconfigError              no usable cluster configuration (kubeconfig, context, in-cluster
                                     account); retrying cannot help until it is fixed
    +-- NotLeaderError               a write refused because this replica does not hold the leader lease;
                                     the leader (or this replica, once it leads again) retries
        +-- WriterYieldedError       a policy left to another controller seen writing it (election off);
                                     this one writes again once the other has been silent a lease duration
    +-- SecretError                  a secret reference (env var, Secret key) cannot be resolved; retrying
                                     helps once it exists or RBAC allows reading it
    +-- AlertDeliveryError           an alert sink did not take a message; ``retryable`` (set per error)
                                     says whether trying again can help (5xx, 429, 408, timeouts)

Each carries ``problems``: one line per problem, for people.
An ``ApiError`` keeps the client's exception as its cause, with the response body cut to 300
characters and the response headers dropped: a logged traceback never carries a whole remote body.

Adapters translate their libraries' errors into these in one place and keep the cause (``raise ... from
exc``), except where the cause would carry a secret into a traceback: an alert sink's transport error (its
text and its request hold the webhook URL, whose path is the credential) and a Secret value that does not
decode (the decoding error holds the value's bytes) are raised ``from None``; their messages say what
happened instead.
"""

from __future__ import annotations


class CanaryError(Exception):
    """Root of every error this project raises on purpose."""

    retryable = False

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class PolicyError(CanaryError):
    """A policy failed validation."""


class TargetError(CanaryError):
    """The target object of a policy cannot be used."""


class TargetNotFoundError(TargetError):
    """The target object does not exist (yet)."""

    retryable = True


class RouteResolutionError(TargetError):
    """The route or its destinations cannot be resolved in the target object."""


class ApiError(CanaryError):
    """A Kubernetes API call failed."""

    def __init__(self, problems: list[str], *, code: int = 0) -> None:
        super().__init__(problems)
        self.code = code


class ConflictError(ApiError):
    """Someone else wrote first (409), or the JSON-patch ``test`` no longer holds (422)."""

    retryable = True


class ForbiddenError(ApiError):
    """RBAC forbids the call (403)."""


class NotFoundError(ApiError):
    """The object or resource type does not exist (404)."""


class UnavailableError(ApiError):
    """The API server did not answer usefully (5xx, timeout, connection refused)."""

    retryable = True


class KubeconfigError(CanaryError):
    """No usable cluster configuration: no kubeconfig (or a broken one), and not running in a cluster."""


class NotLeaderError(CanaryError):
    """This replica does not hold the leader lease, so it must not write."""


class WriterYieldedError(NotLeaderError):
    """Another controller writes this policy and this one yields to it, so it must not write the policy."""


class SecretError(CanaryError):
    """A secret reference cannot be resolved. The message names the reference, never the value.

    Retrying helps once the Secret or variable exists (or RBAC allows reading it).
    """

    retryable = True


class AlertDeliveryError(CanaryError):
    """A sink could not deliver a message.

    The message names the sink, where it sent (``scheme://host/…`` for secret URLs) and the HTTP status or
    network failure, with the remote body cut short; never a webhook URL or a signing secret.

    Attributes:
        sink: the sink's name (``slack``, ``alertmanager``...).
        status: the HTTP status (0: no answer).
        retryable: True when trying again can help (5xx, 429, 408, timeouts, network errors).
        retry_after: seconds the service asked to wait (``Retry-After``, Discord's ``retry_after``), if any.
    """

    def __init__(
        self,
        problems: list[str],
        *,
        sink: str,
        status: int = 0,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(problems)
        self.sink = sink
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
