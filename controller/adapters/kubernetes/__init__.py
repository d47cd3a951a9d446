"""Kubernetes adapters over the official ``kubernetes`` client.

Every call goes through ``KubeApi.call``, which turns the client's exceptions into the project's
(``controller.errors``) in one place: 409 and failed JSON-patch tests become ``ConflictError``, 403 a
``ForbiddenError`` naming the missing RBAC permission, 5xx and transport failures ``UnavailableError``.
"""
