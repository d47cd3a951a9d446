"""canary-controller: canary rollouts for TCP services on Istio and Gateway API."""

from importlib.metadata import PackageNotFoundError, version

try:
    # The one source of the version is the package's metadata (pyproject.toml's project.version).
    __version__ = version("canary-controller")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
