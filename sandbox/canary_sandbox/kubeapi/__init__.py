"""A Kubernetes API server emulator over real HTTP, faithful to kube-apiserver's write semantics.

Built on the standard library's HTTP server, ``jsonschema`` and PyYAML, for integration tests, the local
demo sandbox and benchmarks, with the official ``kubernetes`` client talking to it on loopback.

It keeps what a controller's safety depends on: ``resourceVersion`` on every write and 409 ``Conflict``
on a stale one, 422 ``Invalid`` for a failed JSON-patch ``test`` or an object that violates its CRD's
``openAPIV3Schema`` (with unknown fields pruned and reported in ``Warning`` headers), the ``status``
subresource, 404s, and watches that resume from a ``resourceVersion`` or end with ``410 Expired``.
Faults (errors, delays, cut connections, dropped or expired watches) are injected from Python, and every
write is recorded for tests to inspect.

Behaviours matched to the real server, with their source (kubernetes/kubernetes unless named; the full
table with tests is docs/emulator.md):

============================  ==============================================================================
Behaviour                     Real server (source)
============================  ==============================================================================
failed JSON-patch ``test``    generic 422, no causes (``handlers/patch.go`` ``applyJSPatch``)
watch history, bookmarks      per resource type; BOOKMARK ~1/min and 2 s before timeout (``cacher/``)
CEL on objects                ``x-kubernetes-validations`` evaluated with cel-python (``schema``)
CRD acceptance                structural schema, completeness, schema keywords, CEL compiled against the
                              schema (apiextensions ``schema/validation.go``, ``complete.go``,
                              ``apis/apiextensions/validation/validation.go``) (``crd_checks``)
OpenAPI                       ``/openapi/v2`` JSON and gnostic protobuf, ``/openapi/v3`` (apiextensions
                              ``controller/openapi/builder``, kube-openapi ``handler``) (``openapi``)
Table output                  CRD ``additionalPrinterColumns`` (``tableconvertor.go``) (``table``)
formats, Lease times          formats on strings only (kube-openapi); ``MicroTime`` (``micro_time.go``)
server-side apply             415, as a server without it answers
============================  ==============================================================================

What it does not do is listed in each module's docstring; in short: no admission webhooks, no
authentication or RBAC, no server-side apply or strategic list merging, no controllers, no persistence.

Run it as a process with ``python -m canary_sandbox.kubeapi --help``.
"""

from canary_sandbox.kubeapi.emulator import KubeApiEmulator, UnknownKindError
from canary_sandbox.kubeapi.faults import DEFAULT_USER, Fault, FaultInjector
from canary_sandbox.kubeapi.resources import ResourceType
from canary_sandbox.kubeapi.status import ApiError, Cause
from canary_sandbox.kubeapi.store import WriteRecord

__all__ = [
    "DEFAULT_USER",
    "ApiError",
    "Cause",
    "Fault",
    "FaultInjector",
    "KubeApiEmulator",
    "ResourceType",
    "UnknownKindError",
    "WriteRecord",
]
