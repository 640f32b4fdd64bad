"""Our SigV4 signer produces exactly botocore's signature (botocore is the reference implementation)."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from switchboard.providers.sigv4 import Credentials, SigV4Signer

NOW = 1_764_615_845.0  # 2025-12-01T19:04:05Z
BODY = b'{"messages":[{"role":"user","content":[{"text":"hi"}]}]}'


def botocore_headers(url: str, headers: dict[str, str], token: str | None, monkeypatch: pytest.MonkeyPatch
                     ) -> dict[str, str]:
    class FrozenDatetime(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> FrozenDatetime:
            return cls.fromtimestamp(NOW, tz)

        @classmethod
        def utcnow(cls) -> FrozenDatetime:
            return cls.fromtimestamp(NOW, datetime.UTC).replace(tzinfo=None)

    monkeypatch.setattr("botocore.auth.datetime.datetime", FrozenDatetime)
    request = AWSRequest("POST", url, data=BODY, headers=headers)
    SigV4Auth(BotoCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token), "bedrock",
              "eu-west-3").add_auth(request)
    return dict(request.headers)


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDEXAMPLETOKEN"])
@pytest.mark.parametrize(("host", "path"), [
    ("bedrock-runtime.eu-west-3.amazonaws.com", "/model/eu.amazon.nova-lite-v1%3A0/converse"),
    ("127.0.0.1:8123", "/model/arn%3Aaws%3Abedrock%3Aeu-west-3%3A123456789012%3Ainference-profile%2F"
                       "eu.anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
])
def test_signature_matches_botocore(monkeypatch: pytest.MonkeyPatch, token: str | None, host: str, path: str) -> None:
    scheme = "https" if "amazonaws" in host else "http"
    headers = {"Content-Type": "application/json", "X-Custom": "  two   spaces "}
    ours = SigV4Signer("eu-west-3", "bedrock").sign(Credentials("AKIDEXAMPLE",
                                                                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token),
                                                    host, path, headers, BODY, now=NOW)
    theirs = botocore_headers(f"{scheme}://{host}{path}", headers, token, monkeypatch)
    assert ours == theirs
    assert ours["X-Amz-Date"] == "20251201T190405Z"


def test_signing_key_is_kept_per_day() -> None:
    signer = SigV4Signer("us-east-1", "bedrock")
    creds = Credentials("AKID", "secret")
    first = signer.sign(creds, "h", "/p", {}, b"", now=NOW)
    again = signer.sign(creds, "h", "/p", {}, b"", now=NOW)
    next_day = signer.sign(creds, "h", "/p", {}, b"", now=NOW + 86_400)
    assert first == again and first["Authorization"] != next_day["Authorization"]
    assert "/20251202/us-east-1/bedrock/aws4_request" in next_day["Authorization"]
