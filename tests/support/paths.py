"""Where the tests find the repository and the real-world Istio and Gateway API files beside it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_ISTIO = REPO.parent / "shared" / "data" / "istio"
