"""What the behaviour tests share: the messages they send, how they call a script and read what it
raised or printed, and the servers they stand up (a forward proxy, pages of bulk results)."""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any, NamedTuple

import bulk_create_messages
import create_message
import httpx
import pytest
import respx
import wait_for_bulk_results as wait
from conftest import API_KEY, US

from workbench.sandbox import Sandbox

BOTH = pytest.mark.parametrize("script", [create_message, bulk_create_messages], ids=["create", "bulk"])


MESSAGE: dict[str, Any] = {"channel": "sms", "app": "twilio", "direction": "in", "externalId": "SM-1"}


LONG_KEY = "kst_" + "0123456789abcdefghij" * 12  # 244 characters: longer than any clipped excerpt


def body_for(script: ModuleType) -> Any:
    return dict(MESSAGE) if script is create_message else [dict(MESSAGE, _clientRef="row-1")]


def attempt(script: ModuleType, auth: Any, body: Any = None) -> tuple[Any, BaseException | None]:
    try:
        return script.main(auth, body_for(script) if body is None else body), None
    except Exception as exc:  # the test inspects whatever the script raised
        return None, exc


def everything_shown(error: BaseException | None, result: Any = None) -> str:
    """All a user or a log could see of a job: the error's text, attributes, chained exceptions and
    traceback (what Windmill's wrapper writes), and the result."""
    seen = [json.dumps(result, default=str)]
    while error is not None:
        seen += [str(error), repr(error.args), json.dumps(error.__dict__, default=str)]
        seen += traceback.format_exception(type(error), error, error.__traceback__)
        error = error.__cause__ or error.__context__
    return "\n".join(seen)


def assert_key_hidden(key: str, error: BaseException | None, result: Any = None) -> None:
    shown = everything_shown(error, result)
    assert key not in shown
    assert key[:16] not in shown or len(key) < 16, "a clipped part of the key shows"


CONVERSATION = "5f9a3c1e2b4d6f8a0c1e3b5d"


def message_found(external_id: str, conversation: str = CONVERSATION) -> dict[str, Any]:
    return {
        "data": {
            "type": "message",
            "id": "0f6c2b8e5d1a4c7b9e3f2a10",
            "attributes": {"externalId": external_id},
            "relationships": {"conversation": {"data": {"type": "conversation", "id": conversation}}},
        }
    }


AUTH = {"apiKey": LONG_KEY}


BULK = "5f0c1a2b3c4d5e6f7a8b9c0d"


BATCHES = f"{US}/v1/bulk/{BULK}/batches"


EVIL = "\x1b[2J\x1b[Hcomplete \u202eetelpmoc\u202c\x07"


def fragments_of(key: str) -> list[str]:
    return [key[:-1], key[1:], key[7:23], key[100:116]]


def assert_no_16_characters_of_the_key(text: str) -> None:
    for i in range(len(LONG_KEY) - 15):
        assert LONG_KEY[i : i + 16] not in text, f"characters {i}..{i + 16} of the key show"


def page(results: list[dict[str, Any]], next_link: Any = None, **batch: Any) -> dict[str, Any]:
    fields = {"status": "complete", "successCount": sum(r.get("status") == "created" for r in results)}
    answer: dict[str, Any] = {"data": [{"type": "batch", "attributes": {**fields, **batch, "results": results}}]}
    if next_link is not None:
        answer["links"] = {"next": next_link}
    return answer


def created(ref: str) -> dict[str, Any]:
    return {"_clientRef": ref, "status": "created", "objectId": "6a" * 12}


def waiter(**args: Any) -> tuple[Any, BaseException | None]:
    try:
        return wait.main(AUTH, BULK, **args), None  # type: ignore[arg-type]
    except Exception as exc:  # the test inspects whatever the script raised
        return None, exc


def chain(link: Callable[[int], Any], results: Callable[[int], list[dict[str, Any]]] = lambda n: []) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        number = int(request.url.params.get("page", "1"))
        return httpx.Response(200, json=page(results(number), link(number)))

    return answer


def path_for(script: ModuleType) -> str:
    return "/v1/messages" if script is create_message else "/v1/messages/bulk"


def fail(script: ModuleType, api: respx.Router, *responses: Any, auth: dict[str, str] | None = None) -> Any:
    """Run the script against these answers, expect it to fail, and return the exception."""
    api.post(f"{US}{path_for(script)}").mock(side_effect=list(responses))
    with pytest.raises(script.KustomerError) as failure:
        script.main(auth or {"apiKey": API_KEY}, body_for(script))
    assert API_KEY not in str(failure.value)
    return failure.value


class Outcome(NamedTuple):
    result: Any
    error: BaseException | None
    printed: str  # everything a user could see: the error text, stdout and stderr

    def assert_key_hidden(self) -> None:
        assert API_KEY not in self.printed


def run(script: ModuleType, base_url: str, capsys: pytest.CaptureFixture[str]) -> Outcome:
    try:
        result, error = script.main({"apiKey": API_KEY, "baseUrl": base_url}, body_for(script)), None
    except Exception as exc:  # the test inspects whatever the script raised
        result, error = None, exc
    captured = capsys.readouterr()
    outcome = Outcome(result, error, f"{error!s}{captured.out}{captured.err}")
    outcome.assert_key_hidden()
    return outcome


def posts(box: Sandbox) -> int:
    return sum(1 for r in box.requests if r["method"] == "POST")
