"""The project's exceptions.

::

    CanaryError                      root; never raised itself
    +-- PolicyError                  a policy is invalid (lint's problems); retrying cannot help
    +-- TargetError                  the target object cannot be used
        +-- TargetNotFoundError      no object of that kind/name/namespace; retry helps once it exists
        +-- RouteResolutionError     route or destinations cannot be resolved; retrying the same
                                     object cannot help, an edited object may

Each carries ``problems``: one line per problem, for people.
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
