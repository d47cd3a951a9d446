"""Project tooling that is not part of the product: release artifacts (release.py)."""
