"""What the sandbox remembers, all of it under one lock: the requests it received, the messages it
created (and how often for each _clientRef), its bulk operations and their lifecycle, the rate-limit
window, and the switches that shape its answers."""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# Per-item failure texts, worded as Kustomer's bulk results word them ("duplicate detected" is theirs).
# What the sandbox says of a message it fails: one neutral reason that says it is simulated, so that
# nobody tries to fix a message for a reason that does not fit it.
SIMULATED_FAILURE = "simulated failure (the sandbox fails this message on purpose: nothing in it to fix)"
FAIL_MARKER = "sandbox:fail"  # a message whose preview, externalId or _clientRef holds this fails in a bulk


def object_id() -> str:
    return secrets.token_hex(12)


def now_text(at: float | None = None) -> str:
    moment = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Switches:
    """How the sandbox answers; `Sandbox.configure` (or POST /__sandbox/config) changes them."""

    rate_limit: int | None = None  # requests per window, every /v1 request counted (GETs too, as Kustomer does)
    window: float = 60.0
    latency: float = 0.0  # seconds added to every /v1 answer
    fault: str | None = None  # one of faults.FAULTS, for the next `fault_count` POSTs (all when None)
    fault_count: int | None = None
    max_body_bytes: int | None = None  # larger bodies answer 413
    bulk_seconds: float = 0.0  # a bulk operation is queued, then running, then complete after this long
    item_failure_rate: float = 0.0  # share of bulk items that fail, chosen at random (see `seed`)
    seed: int | None = None
    batch_size: int = 100  # items per batch in /v1/bulk/{id}/batches
    batches_shape: str = "array"  # "array" (the guide's bare list) or "jsonapi" ({data: [...], links})
    batches_page_size: int = 0  # batches per page of /batches ("jsonapi" only); 0: one page


@dataclass
class Bulk:
    id: str
    created: float
    items: list[dict[str, Any]]  # each: _clientRef (or None), and message id or error text
    context: str = "api.sobjects.messages.bulk-create"


@dataclass
class KustomerState:
    switches: Switches = field(default_factory=Switches)
    org: str = field(default_factory=object_id)
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    created_by_ref: Counter[str] = field(default_factory=Counter)
    bulks: dict[str, Bulk] = field(default_factory=dict)
    window_index: int = -1
    window_count: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def configure(self, **values: Any) -> None:
        with self.lock:
            for name, value in values.items():
                setattr(self.switches, name, value)
            if "seed" in values:
                self.rng.seed(values["seed"])

    def journal(self, record: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(record)

    def forget(self) -> None:
        with self.lock:
            self.requests.clear()
            self.messages.clear()
            self.created_by_ref.clear()
            self.bulks.clear()

    def take_fault(self) -> str | None:
        with self.lock:
            switches = self.switches
            if switches.fault is None or switches.fault_count == 0:
                return None
            if switches.fault_count is not None:
                switches.fault_count -= 1
            return switches.fault

    def count_for_rate_limit(self) -> tuple[dict[str, str], bool]:
        """The x-ratelimit-* headers for this request, and whether it is over the limit."""
        with self.lock:
            limit, window = self.switches.rate_limit, self.switches.window
            if not limit:
                return {}, False
            index = math.floor(time.time() / window)
            if index != self.window_index:
                self.window_index, self.window_count = index, 0
            self.window_count += 1
            headers = {
                "x-ratelimit-limit": str(limit),
                "x-ratelimit-remaining": str(max(0, limit - self.window_count)),
                "x-ratelimit-reset": str(math.ceil((index + 1) * window)),
            }
            return headers, self.window_count > limit

    # -- messages --

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        message_id, now = object_id(), now_text()
        conversation = body.get("conversation") or object_id()
        customer = body.get("customer") or object_id()
        message = {
            "type": "message",
            "id": message_id,
            "attributes": {
                **{k: v for k, v in body.items() if k not in ("conversation", "customer", "_clientRef")},
                "size": body.get("size", 0),
                "createdAt": now,
                "updatedAt": now,
                "modifiedAt": now,
            },
            "relationships": {
                "org": {"links": {"self": f"/v1/orgs/{self.org}"}, "data": {"type": "org", "id": self.org}},
                "customer": {
                    "links": {"self": f"/v1/customers/{customer}"},
                    "data": {"type": "customers", "id": customer},
                },
                "conversation": {
                    "links": {"self": f"/v1/conversations/{conversation}"},
                    "data": {"type": "conversation", "id": conversation},
                },
            },
            "links": {"self": f"/v1/messages/{message_id}"},
        }
        with self.lock:
            self.messages.append(message)
            if isinstance(body.get("_clientRef"), str):
                self.created_by_ref[body["_clientRef"]] += 1
        return message

    def find_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        with self.lock:
            found = [m for m in self.messages if m["attributes"].get("externalId") == external_id]
        return found[-1] if found else None

    # -- bulk operations --

    def bulk(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Queue a bulk operation. Its items are applied now (creations counted per _clientRef); its
        outcome shows through GET /v1/bulk/{id} and /batches as its lifecycle moves on."""
        outcomes = []
        for item in items:
            ref = item.get("_clientRef")
            with self.lock:
                failing = self.rng.random() < self.switches.item_failure_rate
            marked = any(FAIL_MARKER in str(item.get(k, "")) for k in ("preview", "externalId", "_clientRef"))
            if failing or marked:
                outcomes.append({"_clientRef": ref, "error": SIMULATED_FAILURE})
            else:
                outcomes.append({"_clientRef": ref, "id": self.create(item)["id"]})
        bulk = Bulk(object_id(), time.time(), outcomes)
        with self.lock:
            self.bulks[bulk.id] = bulk
        return self.bulk_object(bulk, status="queued")

    def get_bulk(self, bulk_id: str) -> Bulk | None:
        with self.lock:
            return self.bulks.get(bulk_id)

    def bulk_status(self, bulk: Bulk) -> tuple[str, int, int]:
        """The operation's status, its complete batches and its batches in all."""
        with self.lock:
            duration, size = self.switches.bulk_seconds, self.switches.batch_size
        total = max(1, math.ceil(len(bulk.items) / size))
        elapsed = time.time() - bulk.created
        complete = total if elapsed >= duration else math.floor(total * elapsed / duration)
        status = "complete" if complete == total else "running" if elapsed >= duration / 3 else "queued"
        return status, complete, total

    def bulk_object(self, bulk: Bulk, status: str | None = None) -> dict[str, Any]:
        current, complete, total = self.bulk_status(bulk)
        status = status or current
        return {
            "type": "bulk",
            "id": bulk.id,
            "attributes": {
                "context": bulk.context,
                "status": status,
                "completed": status == "complete",
                "batches": {"complete": complete if status != "queued" else 0, "total": total},
                "ids": [],
                "v2": True,
                "createdAt": now_text(bulk.created),
                "updatedAt": now_text(),
            },
            "links": {"self": f"/v1/bulk/{bulk.id}"},
        }

    def batches(self, bulk: Bulk) -> list[dict[str, Any]]:
        """The operation's batches as Kustomer's guide shows them: counts, objectIds and, when the
        request carried _clientRef, a `results` entry per item; a batch not yet done is queued."""
        with self.lock:
            size = self.switches.batch_size
        _, complete, total = self.bulk_status(bulk)
        batches = []
        for number in range(total):
            chunk = bulk.items[number * size : (number + 1) * size]
            if number >= complete:
                batches.append({"status": "queued", "successCount": 0, "failureCount": 0, "objectIds": []})
                continue
            done = [item for item in chunk if "id" in item]
            batch: dict[str, Any] = {
                "status": "complete",
                "successCount": len(done),
                "failureCount": len(chunk) - len(done),
                "objectIds": [item["id"] for item in done],
                "completedAt": now_text(bulk.created + 0.001),
                "errors": [{"detail": item["error"]} for item in chunk if "error" in item],
            }
            if any(item["_clientRef"] is not None for item in chunk):
                batch["results"] = [
                    {"_clientRef": item["_clientRef"], "objectId": item["id"], "status": "created"}
                    if "id" in item
                    else {"_clientRef": item["_clientRef"], "status": "error", "error": item["error"]}
                    for item in chunk
                ]
            batches.append(batch)
        return batches
