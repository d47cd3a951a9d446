"""The daemon: settings -> adapters -> scheduler. The only package that reads settings."""
