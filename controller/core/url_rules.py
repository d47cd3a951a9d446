"""Rules about URLs: credentials must not sit inside them, and when two base URLs name the same server.

Pure functions, no I/O. ``credentials_in_url`` backs the policy schema's rule that ``user:password@`` is
refused in every URL a policy writes (``basicAuth`` and ``bearerToken`` exist for that, by reference);
``strip_userinfo`` keeps user info out of anything people read (alert links, messages); ``same_url`` and
``url_allowed`` decide whether a URL a policy names is one the operator allowed.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

NAMESPACE_PLACEHOLDER = "{namespace}"
"""In an allowed-URL pattern, stands for the policy's namespace (``http://prometheus.{namespace}:9090``)."""
ANY_URL = "*"
"""An allowed-URL pattern matching every URL."""


def credentials_in_url(url: str) -> str | None:
    """Why ``url`` is refused because it carries credentials (``user:password@host``), or None.

    The message never repeats the credentials.
    """
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None  # not a URL at all: other rules say so
    if "@" not in netloc:
        return None
    return (
        "credentials inside the URL (user:password@) are refused: they would be shown wherever the URL is "
        "(alerts, logs, status); use basicAuth or bearerToken, by reference"
    )


def strip_userinfo(url: str) -> str:
    """``url`` without ``user:password@`` (unchanged when it has none or cannot be parsed)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _normal(url: str) -> tuple[str, str, str, int | None, str] | None:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    userinfo = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
    return (scheme, userinfo, (parts.hostname or "").lower(), port, parts.path.rstrip("/"))


def same_url(url: str, other: str | None) -> bool:
    """Whether two base URLs name the same server and path.

    Scheme and host case, an explicit default port and a trailing ``/`` make no difference; user info,
    query and everything else do (``http://a@host`` is not ``http://host``). An unparsable URL is the
    same as nothing.
    """
    if other is None:
        return False
    mine, theirs = _normal(url), _normal(other)
    return mine is not None and mine == theirs


def url_allowed(url: str, patterns: tuple[str, ...], *, namespace: str) -> bool:
    """Whether ``url`` matches one of ``patterns``: a URL (``{namespace}`` standing for ``namespace``) or ``*``."""
    for pattern in patterns:
        if pattern == ANY_URL:
            return True
        if same_url(url, pattern.replace(NAMESPACE_PLACEHOLDER, namespace)):
            return True
    return False
