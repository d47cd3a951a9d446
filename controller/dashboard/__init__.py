"""The web dashboard: ``canaryctl dashboard`` (local, with actions) and the daemon's read-only one.

``server`` serves the page (``assets/``) and the JSON API, ``data`` reads what it shows through the
adapters, ``auth`` checks who may see what in the cluster. docs/dashboard.md describes it all.
"""
