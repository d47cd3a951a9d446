"""canary-controller: canary rollouts for TCP services on Istio and Gateway API."""

__version__ = "0.1.0"
