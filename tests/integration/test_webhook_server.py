"""Slow and greedy clients against the receiver served as ``canaryflow webhook serve`` serves it
(uvicorn with the limits of canaryflow.webhook.server), over raw TCP on 127.0.0.1.

Deadlines are set short here so the tests are quick; each wait is bounded by the socket timeout,
and nothing asserts how long anything took.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from pydantic import SecretStr

from canaryflow.webhook import WebhookConfig, WebhookSecrets, create_app
from canaryflow.webhook.starter import InMemoryStarter
from tests.integration.served import ServedApp, connect, read_answer
from tests.unit.webhook.support import GENERIC_SECRET, body_of, generic_headers

pytestmark = pytest.mark.timeout(60)

LIMITS = {"body_timeout_seconds": 0.5, "header_timeout_seconds": 0.5, "max_header_bytes": 4096,
          "max_connections": 4, "rate_limit_per_second": 0}
BODY = body_of({"service": "checkout", "version": "v2"})


@pytest.fixture
def served() -> Iterator[ServedApp]:
    config = WebhookConfig(**LIMITS)
    starter = InMemoryStarter()
    app = create_app(config, starter=starter, secrets=WebhookSecrets(generic=SecretStr(GENERIC_SECRET)))
    with ServedApp(app, config=config) as served:
        served.starter = starter
        yield served


def head(body: bytes, *, length: int | None = None, extra: bytes = b"") -> bytes:
    lines = [b"POST /hooks/generic HTTP/1.1", b"Host: 127.0.0.1", b"Content-Length: %d" % (length or len(body))]
    lines += [f"{k}: {v}".encode() for k, v in generic_headers(body).items()]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


@pytest.mark.parametrize("sent", [0, 10], ids=["no body", "part of the body"])
def test_a_body_that_stops_coming_is_answered_408_and_the_connection_closed(served, sent):
    with connect(served) as sock:
        sock.sendall(head(BODY) + BODY[:sent])
        answer = read_answer(sock)  # returns once the server closes the connection
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b"body not received within 0.5 s" in answer
    assert served.starter.runs == {}


def test_a_request_head_that_never_completes_is_cut_off(served):
    with connect(served) as sock:
        sock.sendall(b"POST /hooks/generic HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        closed = False
        for _ in range(100):  # keep trickling a header byte by byte: each byte used to reset nothing
            try:
                sock.sendall(b"X")
                time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        if not closed:
            sock.settimeout(1)
            closed = read_answer(sock) == b""
    assert closed


def test_an_idle_connection_is_closed_without_a_request(served):
    with connect(served) as sock:
        assert read_answer(sock) == b""  # nothing sent: closed at the head deadline, nothing answered


def test_a_request_head_over_the_cap_is_refused_complete_or_not(served):
    padding = b"X-Padding: " + b"p" * 8192 + b"\r\n"
    with connect(served) as sock:  # complete: the app measures it
        sock.sendall(head(BODY, extra=padding) + BODY)
        assert read_answer(sock).startswith(b"HTTP/1.1 431 ")
    with connect(served) as sock:  # never complete: h11 stops buffering at the cap instead of growing
        sock.sendall(head(BODY)[:-2] + padding)
        assert read_answer(sock).startswith(b"HTTP/1.1 400 ")
    assert served.starter.runs == {}


def test_connections_beyond_the_limit_are_answered_503_until_some_close():
    config = WebhookConfig(**{**LIMITS, "header_timeout_seconds": 30})  # the held connections stay open
    starter = InMemoryStarter()
    app = create_app(config, starter=starter, secrets=WebhookSecrets(generic=SecretStr(GENERIC_SECRET)))
    with ServedApp(app, config=config) as served:
        held = [connect(served) for _ in range(LIMITS["max_connections"] - 1)]
        try:
            for sock in held:  # one answered request each: the server has surely counted them
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
            refused = httpx.post(served.url + "/hooks/generic", content=BODY, headers=generic_headers(BODY),
                                 timeout=10)
            assert refused.status_code == 503
        finally:
            for sock in held:
                sock.close()
        for _ in range(100):  # the server notices the closed connections on its own schedule
            answer = httpx.post(served.url + "/hooks/generic", content=BODY, headers=generic_headers(BODY),
                                timeout=10)
            if answer.status_code != 503:
                break
            time.sleep(0.05)
        assert answer.status_code in (200, 202), answer.text
        assert len(starter.runs) == 1
