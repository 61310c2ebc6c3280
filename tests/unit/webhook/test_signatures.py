"""Signature checks: GitHub's published test vector, and every way a signature can be wrong."""

from __future__ import annotations

from canaryflow.webhook import signatures as sig
from canaryflow.webhook.signatures import Outcome

# https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries#testing-the-webhook-payload-validation
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_EXPECTED = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def test_github_published_test_vector():
    assert sig.sign_github(GITHUB_SECRET, GITHUB_PAYLOAD) == GITHUB_EXPECTED
    assert sig.verify_github(GITHUB_SECRET, GITHUB_EXPECTED, GITHUB_PAYLOAD).ok


def test_github_uppercase_hex_is_the_same_signature():
    assert sig.verify_github(GITHUB_SECRET, "sha256=" + GITHUB_EXPECTED[7:].upper(), GITHUB_PAYLOAD).ok


def test_github_wrong_secret_body_prefix_or_garbage_are_invalid():
    cases = [
        (GITHUB_SECRET + "x", GITHUB_EXPECTED, GITHUB_PAYLOAD),
        (GITHUB_SECRET, GITHUB_EXPECTED, GITHUB_PAYLOAD + b" "),
        (GITHUB_SECRET, GITHUB_EXPECTED.replace("sha256=", "sha1="), GITHUB_PAYLOAD),
        (GITHUB_SECRET, GITHUB_EXPECTED[:-1], GITHUB_PAYLOAD),
        (GITHUB_SECRET, "sha256=zz\u00e9", GITHUB_PAYLOAD),
        (None, GITHUB_EXPECTED, GITHUB_PAYLOAD),  # source not configured
    ]
    for secret, header, body in cases:
        assert sig.verify_github(secret, header, body).outcome is Outcome.INVALID, header


def test_github_missing_header():
    assert sig.verify_github(GITHUB_SECRET, None, GITHUB_PAYLOAD).outcome is Outcome.MISSING
    assert sig.verify_github(GITHUB_SECRET, "", GITHUB_PAYLOAD).outcome is Outcome.MISSING


def test_gitlab_token():
    assert sig.verify_gitlab("tok-1", "tok-1").ok
    assert sig.verify_gitlab("tok-1", "tok-2").outcome is Outcome.INVALID
    assert sig.verify_gitlab("tok-1", "tok-1 ").outcome is Outcome.INVALID
    assert sig.verify_gitlab(None, "tok-1").outcome is Outcome.INVALID
    assert sig.verify_gitlab("tok-1", None).outcome is Outcome.MISSING


def test_generic_signature_covers_timestamp_and_body():
    body, ts = b'{"service":"checkout"}', "1700000000"
    header = sig.sign_generic("k", ts, body)
    assert header == sig.sign_generic("k", 1700000000, body)
    assert sig.verify_generic("k", ts, header, body, now=1700000000).ok
    # the same signature with another timestamp or body is not valid
    assert sig.verify_generic("k", "1700000001", header, body, now=1700000000).outcome is Outcome.INVALID
    assert sig.verify_generic("k", ts, header, body + b" ", now=1700000000).outcome is Outcome.INVALID
    assert sig.verify_generic("other", ts, header, body, now=1700000000).outcome is Outcome.INVALID


def test_generic_window_is_300_seconds_both_ways():
    body, ts = b"{}", 1_700_000_000
    header = sig.sign_generic("k", ts, body)
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 300).ok
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 300).ok
    stale = sig.verify_generic("k", str(ts), header, body, now=ts + 301)
    future = sig.verify_generic("k", str(ts), header, body, now=ts - 301)
    assert stale.outcome is Outcome.INVALID and "old" in stale.reason
    assert future.outcome is Outcome.INVALID and "future" in future.reason


def test_generic_timestamp_must_be_unix_seconds_and_headers_present():
    body = b"{}"
    for ts in ("-5", "1e9", "17000000.5", " 1700000000", "١٧٠٠٠٠٠٠٠٠"):
        header = sig.sign_generic("k", ts, body)
        assert sig.verify_generic("k", ts, header, body, now=1700000000).outcome is Outcome.INVALID, ts
    assert sig.verify_generic("k", None, "sha256=00", body, now=0).outcome is Outcome.MISSING
    assert sig.verify_generic("k", "1", None, body, now=0).outcome is Outcome.MISSING


def test_reasons_never_carry_secret_or_signature():
    body, ts = b"{}", "1700000000"
    header = sig.sign_generic("hunter2-secret", ts, body)
    results = [
        sig.verify_generic("hunter2-secret", ts, header[:-2] + "00", body, now=1700000000),
        sig.verify_generic("hunter2-secret", ts, header, body, now=1800000000),
        sig.verify_github("hunter2-secret", header, body),
        sig.verify_gitlab("hunter2-secret", "wrong"),
    ]
    for result in results:
        assert "hunter2" not in result.reason and header[7:] not in result.reason


def test_a_signature_has_one_spelling_whitespace_inside_makes_it_none():
    digest = GITHUB_EXPECTED[7:]
    assert sig.given_digest(GITHUB_EXPECTED) == digest
    assert sig.given_digest("sha256=" + digest.upper()) == digest  # hex case: one canonical form
    assert sig.given_digest(" \t" + GITHUB_EXPECTED + "\t ") == digest  # HTTP's optional whitespace
    for inside in (" ", "\t", "\xa0", "\r\n ", "\u3000"):
        header = "sha256=" + inside + digest
        assert sig.given_digest(header) is None, repr(inside)
        assert sig.verify_github(GITHUB_SECRET, header, GITHUB_PAYLOAD).outcome is Outcome.INVALID
    assert sig.given_digest("sha256=" + digest + "00") is None
    assert sig.given_digest("sha256=" + "\uff10" * 64) is None  # full-width digits are not hex
