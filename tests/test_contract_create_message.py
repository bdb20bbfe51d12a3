"""create_message against Kustomer's recorded answers (tests/recordings/create_message/)."""

from __future__ import annotations

from typing import Any

import create_message
import pytest
from conftest import API_KEY, FakeTime
from create_message import kustomer

MESSAGE: dict[str, Any] = {
    "conversation": "57c8d2b365f7cc14004e674f",
    "channel": "email",
    "app": "postmark",
    "direction": "in",
    "preview": "Can you please help me?",
    "status": "received",
    "sentAt": "2016-09-02T01:15:14.000Z",
    "externalId": "<CADBFQxRPMLtQrBS9x+mt=7Wcy0GEw0FxcneO5sn=k4XgGDyVZg@mail.gmail.com>",
}


def run_failing(auth: kustomer) -> str:
    with pytest.raises(create_message.KustomerError) as failure:
        create_message.main(auth, dict(MESSAGE))
    text = str(failure.value)
    assert API_KEY not in text
    return text


@pytest.mark.vcr
def test_201_created(auth: kustomer) -> None:
    result = create_message.main(auth, dict(MESSAGE))
    assert result["data"]["type"] == "message"
    assert result["data"]["id"] == "57c8d2b01a57ed1400392073"  # what a flow reads as results.<step>.data.id
    assert result["data"]["relationships"]["conversation"]["data"]["id"] == MESSAGE["conversation"]


@pytest.mark.vcr
def test_400_short_error_shape(auth: kustomer) -> None:
    text = run_failing(auth)
    assert "400 Bad Request" in text
    assert "bad_request: Invalid request body or parameters." in text
    assert "Nothing was created" in text


@pytest.mark.vcr
def test_400_json_api_error_shape(auth: kustomer) -> None:
    text = run_failing(auth)
    assert "400 Bad Request" in text
    assert "invalid_value: Invalid value: channel must be one of the allowed values" in text
    assert "at pointer /channel" in text


@pytest.mark.vcr
def test_401_wrong_region(auth: kustomer) -> None:
    with pytest.raises(create_message.KustomerAPIError) as failure:
        create_message.main(auth, dict(MESSAGE))
    text = str(failure.value)
    assert failure.value.status == 401
    assert "Auth token associated with pod prod2" in text
    assert "https://api.prod2.kustomerapp.com" in text  # the hint names the region's host
    assert API_KEY not in text


@pytest.mark.vcr
def test_404_unknown_conversation(auth: kustomer) -> None:
    text = run_failing(auth)
    assert "404 Not Found" in text
    assert "conversation not found" in text
    assert "at parameter conversation" in text
    assert "Check the conversation, customer and other ids" in text


@pytest.mark.vcr
def test_429_then_created(auth: kustomer, fake_time: FakeTime) -> None:
    result = create_message.main(auth, dict(MESSAGE))
    assert result["data"]["id"] == "57c8d2b01a57ed1400392073"
    # The window reset 30 s after the clock: it waited that long (plus under a second of jitter), once.
    assert len(fake_time.sleeps) == 1
    assert 30 < fake_time.sleeps[0] <= 31
