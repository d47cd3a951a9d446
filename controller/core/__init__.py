"""Pure decisions: the policy schema and its validation, route resolution and weight math, plans, the rollout
state machine, the metric judgement and its queries, what a tenant's policy may reference, and the CRD.

Nothing in this package performs I/O, reads the clock or the environment, or configures logging;
import-linter enforces it (see pyproject.toml).
"""
