"""Runs reconcile passes through the ports: idempotent, safe to re-run after a crash."""
