"""The plainest possible port of the Hub's "Create message" to Python, for `uv run bench` to compare.

One httpx call, no validation, no retries, no error mapping: what the seed script does.
"""

import httpx


def main(auth: dict, body: dict) -> object:  # type: ignore[type-arg]  # Windmill's form needs a bare `dict`
    base_url = auth.get("baseUrl") or "https://api.kustomerapp.com"
    response = httpx.post(f"{base_url}/v1/messages", json=body, headers={"Authorization": "Bearer " + auth["apiKey"]})
    if response.is_error:
        raise Exception(f"{response.status_code} {response.text}")
    return response.json()
