"""Hand-made hostile input for every operation of the OpenAPI schema; `make fuzz` sends it after
schemathesis, whose generators rarely produce it: what JSON and URLs can carry but PostgreSQL cannot
store (a NUL character, half of a surrogate pair), JSON nested past the parser's recursion, NaN,
numbers past 64 bits, bytes that are not UTF-8. Each operation gets every path parameter, every
query parameter and every request body field replaced by each hostile value in turn, plus a few
hostile bodies whole. The answers are counted here; run.py fails the run on any 5xx in the access
log, so nothing here asserts.
"""

from __future__ import annotations

import http.client
import json
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

# Already percent-encoded: a NUL, a NUL inside a word, an unpaired surrogate's UTF-8 bytes (not
# UTF-8 at all), an emoji, a lone percent sign, a dot-dot, something long.
URL_VALUES = ["%00", "a%00b", "%ED%A0%80", "%F0%9F%98%80", "%25", "..", "x" * 300]
# Through json.dumps: "\u0000" and "\ud800" leave as escapes, which is how a client sends them.
BODY_VALUES: list[Any] = ["a\x00b", "\ud800", "😀", 2**70, -(2**70), 1e308, -1, "", [], {}, None]
WHOLE_BODIES: list[bytes] = [
    b"[" * 5000 + b"]" * 5000,
    b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"a": NaN, "b": Infinity}',
    b'{"a": "\\u0000", "b": "\\ud800"}',
    b"\xff\xfe\x00{",
    b'{"a": 1' + b" " * 10 + b"}" * 3,
]
# Plausible values of the seeded world (tests/fuzz/seed.py: beta's subtree) for the parameters not
# being replaced, so each request gets past routing to the code that reads the hostile one.
PLAUSIBLE = {
    "code": "acme",
    "number": "BETA-2026-000001",
    "period": "2026-10",
    "key_id": "1",
    "webhook_id": "1",
}


def _schema_of(schema: dict[str, Any], ref_or_schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in ref_or_schema:
        ref_or_schema = schema["components"]["schemas"][ref_or_schema["$ref"].rsplit("/", 1)[-1]]
    return ref_or_schema


def _requests(schema: dict[str, Any]) -> list[tuple[str, str, bytes | None]]:
    """(method, path with query, body) of every hostile request."""
    out: list[tuple[str, str, bytes | None]] = []
    for template, operations in schema["paths"].items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            params = operation.get("parameters", [])
            path_params = [p["name"] for p in params if p["in"] == "path"]
            query_params = [p["name"] for p in params if p["in"] == "query"]

            def path_with(replaced: str | None = None, value: str = "") -> str:
                path = template
                for name in path_params:
                    path = path.replace(
                        "{" + name + "}", value if name == replaced else PLAUSIBLE.get(name, "1")
                    )
                return path

            body_schema = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            )
            fields = list(_schema_of(schema, body_schema).get("properties", {})) if body_schema else []
            base_body = json.dumps(dict.fromkeys(fields, "x")).encode() if body_schema else None
            verb = method.upper()
            for name in path_params:
                for value in URL_VALUES:
                    out.append((verb, path_with(name, value), base_body))
            for name in query_params:
                for value in URL_VALUES:
                    out.append((verb, f"{path_with()}?{quote(name)}={value}", base_body))
            if body_schema:
                for name in fields:
                    for body_value in BODY_VALUES:
                        body = dict.fromkeys(fields, "x") | {name: body_value}
                        out.append((verb, path_with(), json.dumps(body).encode()))
                for whole in WHOLE_BODIES:
                    out.append((verb, path_with(), whole))
    # The usage batch's events, field by field (its body schema names only "events").
    event = {
        "request_id": "nasty-1",
        "account": "acme",
        "model": "glm-5",
        "input_tokens": 1,
        "occurred_at": "2026-10-15T10:00:00Z",
        "tags": {"k": "v"},
    }
    for name in [*event, "output_tokens"]:
        for body_value in [*BODY_VALUES, {"k": "a\x00"}, {"a\x00": 1}, {"k": ["\ud800"]}]:
            events = [event | {name: body_value, "request_id": f"nasty-{name}-{len(out)}"}]
            out.append(("POST", "/api/v1/usage/batches", json.dumps({"events": events}).encode()))
    return out


def nasty_run(*, schema_path: Path, port: int, secret: str) -> Counter[int]:
    """Send every hostile request; the statuses answered, counted."""
    schema = yaml.safe_load(schema_path.read_text())
    statuses: Counter[int] = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    for method, path, body in _requests(schema):
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
        except (http.client.HTTPException, OSError):
            # The server closed the connection (a request it refused to parse): start a new one.
            statuses[0] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    return statuses
