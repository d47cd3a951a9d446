"""Pure decisions: the policy schema, route resolution and weight math.

Nothing in this package performs I/O, reads the clock or the environment, or configures logging;
import-linter enforces it (see pyproject.toml).
"""
