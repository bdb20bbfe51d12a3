"""A Kustomer stand-in on loopback: the messages endpoints, bulk operations with their lifecycle,
the externalId lookup, Kustomer's answers, and switches for faults.

    uv run kustomer-sandbox [--port N] [--rate-limit N --window S] [--latency MS] [--fault KIND]
                            [--bulk-seconds S] [--item-failure-rate R]

Serves POST /v1/messages, POST /v1/messages/bulk, GET /v1/bulk/{id}, GET /v1/bulk/{id}/batches and
GET /v1/messages/externalid={externalId} as Kustomer documents them: a Bearer token is required (401
in Kustomer's error shape without one), bodies are checked against Kustomer's published message rules
on its own (rules.py, with jsonschema and not with the scripts' code: 400 in Kustomer's JSON:API error
shape, one error per problem, each with its pointer), and answers carry fresh ids in Kustomer's shapes.
A bulk operation is queued, then running, then complete after --bulk-seconds; its /batches lists
per-item results by _clientRef, objectIds, successCount and failureCount. Items fail at
--item-failure-rate, or when their preview, externalId or _clientRef holds "sandbox:fail".

GET /__sandbox/requests lists what it received (the token hidden), /__sandbox/created how often each
_clientRef was created; DELETE /__sandbox/requests forgets everything; POST /__sandbox/config changes
the switches while it runs (see state.Switches). Faults (faults.py) apply to the next POSTs.
"""

from workbench.sandbox.faults import FAULTS
from workbench.sandbox.rules import body_errors
from workbench.sandbox.server import Sandbox

__all__ = ["FAULTS", "Sandbox", "body_errors", "main"]


def main(argv: list[str] | None = None) -> int:
    from workbench.sandbox.cli import main as cli

    return cli(argv)
