"""Delta Exchange request signing, shared by our client and the emulator that checks it.

The official ``delta-rest-client`` (the reference) signs ``METHOD + timestamp + path + ?query +
body`` with HMAC-SHA256 of the API secret, hex-encoded, where ``timestamp`` is whole Unix seconds
and ``body`` is the compact JSON text actually sent. Headers: ``api-key``, ``timestamp``,
``signature`` and a ``User-Agent`` (Delta refuses requests without one). A signature is valid for
``SIGNATURE_WINDOW_S`` seconds of the server's clock, so the client measures its skew.

The private WebSocket authenticates the same way over ``GET + timestamp + /live``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.parse
from collections.abc import Mapping
from typing import Any

SIGNATURE_WINDOW_S = 5  # Delta: "requests expire 5 seconds after the timestamp"
USER_AGENT = "theta-desk-kit/1"
WS_AUTH_PATH = "/live"


def signature(secret: str, message: str) -> str:
    """HMAC-SHA256 of ``message`` under ``secret``, hex (what Delta compares)."""
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def query_string(query: Mapping[str, Any] | None) -> str:
    """``?k=v&...`` exactly as the reference client builds it (``quote_plus`` values, in the
    mapping's order); '' for no query. The same text goes on the URL, so both sides agree."""
    if not query:
        return ""
    return "?" + "&".join(f"{k}={urllib.parse.quote_plus(str(v))}" for k, v in query.items())


def body_string(body: Any) -> str:
    """The compact JSON the reference client sends (and signs); '' for no body."""
    return "" if body is None else json.dumps(body, separators=(",", ":"))


def sign_request(
    secret: str, method: str, timestamp: str, path: str, query: str = "", body: str = ""
) -> str:
    """The signature of one REST request; ``query`` includes its leading ``?``."""
    return signature(secret, method.upper() + timestamp + path + query + body)


def auth_headers(api_key: str, secret: str, method: str, timestamp: str, path: str,
                 query: str = "", body: str = "") -> dict[str, str]:  # fmt: skip
    """The headers of a signed request."""
    return {
        "api-key": api_key,
        "timestamp": timestamp,
        "signature": sign_request(secret, method, timestamp, path, query, body),
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
    }


def ws_auth_message(api_key: str, secret: str, timestamp: str) -> dict[str, Any]:
    """The private socket's ``key-auth`` request."""
    return {
        "type": "key-auth",
        "payload": {
            "api-key": api_key,
            "signature": signature(secret, "GET" + timestamp + WS_AUTH_PATH),
            "timestamp": timestamp,
        },
    }
