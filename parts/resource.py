"""The `kustomer` resource type as the scripts take it: Windmill's form shows a resource picker for a
parameter annotated with it (resource_types/kustomer.resource-type.yaml is its schema).

The source of the shared part "resource" (see workbench/shared_parts.py).
"""

from typing import NotRequired, TypedDict


# ---- shared part "resource": the same in every script of scripts/kustomer ----
class kustomer(TypedDict):
    """A Kustomer API key, and the host of its region when that is not the US one."""

    apiKey: str
    baseUrl: NotRequired[str]


# ---- end of shared part "resource" ----
