"""Kubernetes adapters over the official ``kubernetes`` client.

Every call names its object once, by a ``Resource`` (group, plural, versions), a namespace and a name, to a
verb of ``KubeApi`` (``get_obj``, ``list_objs``, ``create_obj``, ``replace_obj``, ``replace_status``,
``patch_obj``). ``KubeApi.call`` turns the client's exceptions into the project's (``controller.errors``) in
one place: 409 becomes ``ConflictError``, 403 a ``ForbiddenError`` naming the missing RBAC permission, 5xx
and transport failures ``UnavailableError``; the client's exception stays the cause, its body cut short.
``load_api_client`` is the one kubeconfig loader.
"""
