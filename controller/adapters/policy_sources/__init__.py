"""Where the daemon's policies come from: a directory of YAML files, CanaryPolicy resources, and both merged.

One module per source: :mod:`.directory` (``DirectoryPolicySource``, YAML files, normally a mounted
ConfigMap), :mod:`.resources` (``CrdPolicySource``, CanaryPolicy resources listed and watched as client-go's
reflector does), and :mod:`.merge` (``merge_snapshots``: a policy defined more than once runs nowhere).
"""

from controller.adapters.policy_sources.directory import (
    FILE_LIMITS,
    DirectoryPolicySource,
    FileStat,
    Fingerprint,
    file_problem_object,
    load_policy_file,
)
from controller.adapters.policy_sources.merge import KIND, merge_snapshots
from controller.adapters.policy_sources.resources import (
    CacheEntry,
    CrdPolicySource,
    policy_from_resource,
    validated_part,
)

__all__ = [
    "FILE_LIMITS",
    "KIND",
    "CacheEntry",
    "CrdPolicySource",
    "DirectoryPolicySource",
    "FileStat",
    "Fingerprint",
    "file_problem_object",
    "load_policy_file",
    "merge_snapshots",
    "policy_from_resource",
    "validated_part",
]
