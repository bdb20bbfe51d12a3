"""bulk_create_messages against Kustomer's recorded answers (tests/recordings/bulk_create_messages/)."""

from __future__ import annotations

from typing import Any

import bulk_create_messages
import pytest
from conftest import API_KEY, FakeTime
from create_message import kustomer

MESSAGES: list[dict[str, Any]] = [
    {
        "channel": "email",
        "app": "postmark",
        "direction": "in",
        "conversation": "57c8d2b365f7cc14004e674f",
        "preview": "Hello, I have a question. Can you help me?",
        "subject": "Question",
        "_clientRef": "row-1",
    },
    {
        "channel": "sms",
        "app": "twilio",
        "direction": "out",
        "conversation": "57c8d2b365f7cc14004e674f",
        "preview": "Sure, what is it?",
        "_clientRef": "row-2",
    },
]


def run_failing(auth: kustomer) -> bulk_create_messages.KustomerError:
    with pytest.raises(bulk_create_messages.KustomerError) as failure:
        bulk_create_messages.main(auth, [dict(m) for m in MESSAGES])
    assert API_KEY not in str(failure.value)
    return failure.value


@pytest.mark.vcr
def test_200_bulk_operation(auth: kustomer) -> None:
    result = bulk_create_messages.main(auth, [dict(m) for m in MESSAGES])
    assert result["data"]["type"] == "bulk"
    assert result["data"]["id"] == "5b3bddb67f8469003df370a4"
    assert result["data"]["links"]["self"] == "/v1/bulk/5b3bddb67f8469003df370a4"


@pytest.mark.vcr
def test_400_short_error_shape(auth: kustomer) -> None:
    text = str(run_failing(auth))
    assert "400 Bad Request" in text
    assert "bad_request: Invalid request body or parameters." in text


@pytest.mark.vcr
def test_400_json_api_error_shape(auth: kustomer) -> None:
    text = str(run_failing(auth))
    assert "invalid_value: Invalid value: conversation is closed" in text
    assert "at pointer /1/conversation" in text  # points at the second message


@pytest.mark.vcr
def test_401_missing_role(auth: kustomer) -> None:
    error = run_failing(auth)
    assert isinstance(error, bulk_create_messages.KustomerAPIError)
    assert error.status == 401
    assert "org.permission.message.create" in str(error)
    assert "set auth.baseUrl to the key's region" in str(error)


@pytest.mark.vcr
def test_404_unknown_conversation(auth: kustomer) -> None:
    text = str(run_failing(auth))
    assert "404 Not Found" in text
    assert "not_found: Conversation not found." in text


@pytest.mark.vcr
def test_413_too_large(auth: kustomer) -> None:
    text = str(run_failing(auth))
    assert "413" in text
    assert "send fewer messages per request" in text


@pytest.mark.vcr
def test_429_then_accepted(auth: kustomer, fake_time: FakeTime) -> None:
    result = bulk_create_messages.main(auth, [dict(m) for m in MESSAGES])
    assert result["data"]["id"] == "5b3bddb67f8469003df370a4"
    assert len(fake_time.sleeps) == 1
    assert 12 < fake_time.sleeps[0] <= 13  # Retry-After: 12, plus under a second of jitter
