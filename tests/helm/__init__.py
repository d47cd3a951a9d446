"""The Helm chart in helm/: lint, install into the API emulator, RBAC, security and settings."""
