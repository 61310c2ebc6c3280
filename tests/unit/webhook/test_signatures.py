"""Signature checks: GitHub's published test vector, and every way a signature can be wrong."""

from __future__ import annotations

import hashlib
import hmac

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


# --- outcomes and what a refusal says ---------------------------------------------------------------

def test_outcome_texts_are_what_the_sender_is_answered():
    assert Outcome.MISSING.value == "signature missing"
    assert Outcome.INVALID.value == "signature invalid"
    assert sig.OK.ok and sig.OK.outcome is Outcome.OK and sig.OK.reason == ""
    assert not sig.Check(Outcome.MISSING, "x").ok
    assert not sig.Check(Outcome.INVALID, "x").ok


# --- GitHub -------------------------------------------------------------------------------------

def test_github_secret_may_be_bytes_or_text_encoded_as_utf8():
    assert sig.sign_github(GITHUB_SECRET.encode(), GITHUB_PAYLOAD) == GITHUB_EXPECTED
    assert sig.verify_github(GITHUB_SECRET.encode(), GITHUB_EXPECTED, GITHUB_PAYLOAD).ok
    header = sig.sign_github("clé-secrète", GITHUB_PAYLOAD)
    assert header == sig.sign_github("clé-secrète".encode(), GITHUB_PAYLOAD)
    assert sig.verify_github("clé-secrète".encode(), header, GITHUB_PAYLOAD).ok


def test_github_signs_the_raw_body_as_hmac_sha256_hex():
    body = b'{"ref":"refs/heads/main"}'
    expected = "sha256=" + hmac.new(b"s3cr3t", body, hashlib.sha256).hexdigest()
    assert sig.sign_github("s3cr3t", body) == expected
    assert sig.verify_github("s3cr3t", expected, body).ok
    assert sig.verify_github("s3cr3t", sig.sign_github("s3cr3t", b""), b"").ok


def test_github_refusal_reasons():
    assert sig.verify_github(GITHUB_SECRET, None, GITHUB_PAYLOAD) == sig.Check(
        Outcome.MISSING, "no X-Hub-Signature-256 header")
    for secret in (None, "", b""):
        assert sig.verify_github(secret, GITHUB_EXPECTED, GITHUB_PAYLOAD) == sig.Check(
            Outcome.INVALID, "source not configured"), secret
    for secret, header, body in [
        (GITHUB_SECRET + "x", GITHUB_EXPECTED, GITHUB_PAYLOAD),  # wrong secret
        (GITHUB_SECRET, GITHUB_EXPECTED, GITHUB_PAYLOAD + b"!"),  # tampered body
        (GITHUB_SECRET, "sha1=" + GITHUB_EXPECTED[7:], GITHUB_PAYLOAD),  # wrong header format
        (GITHUB_SECRET, "SHA256=" + GITHUB_EXPECTED[7:], GITHUB_PAYLOAD),  # the prefix is lower case
        (GITHUB_SECRET, GITHUB_EXPECTED[7:], GITHUB_PAYLOAD),  # bare hex, no prefix
    ]:
        assert sig.verify_github(secret, header, body) == sig.Check(Outcome.INVALID, "HMAC mismatch"), header


def test_github_a_missing_header_is_reported_before_an_unconfigured_source():
    assert sig.verify_github(None, None, GITHUB_PAYLOAD).outcome is Outcome.MISSING


def test_only_space_and_tab_around_the_signature_are_trimmed():
    digest = GITHUB_EXPECTED[7:]
    for around in ("\n", "\r", "\r\n", "\xa0", "\x0b", "\x0c", "X", "\x00"):
        for header in (GITHUB_EXPECTED + around, around + GITHUB_EXPECTED):
            assert sig.given_digest(header) is None, repr(header)
            assert sig.verify_github(GITHUB_SECRET, header, GITHUB_PAYLOAD).outcome is Outcome.INVALID
    assert sig.given_digest("\t " + GITHUB_EXPECTED) == digest
    assert sig.verify_github(GITHUB_SECRET, " " + GITHUB_EXPECTED + "\t", GITHUB_PAYLOAD).ok


# --- GitLab -------------------------------------------------------------------------------------

def test_gitlab_refusal_reasons():
    assert sig.verify_gitlab("tok-1", None) == sig.Check(Outcome.MISSING, "no X-Gitlab-Token header")
    assert sig.verify_gitlab("tok-1", "") == sig.Check(Outcome.MISSING, "no X-Gitlab-Token header")
    assert sig.verify_gitlab(None, None).outcome is Outcome.MISSING
    for token in (None, ""):
        assert sig.verify_gitlab(token, "tok-1") == sig.Check(Outcome.INVALID, "source not configured")
    for header in ("tok-2", "tok-", "tok-11", "TOK-1", " tok-1"):
        assert sig.verify_gitlab("tok-1", header) == sig.Check(Outcome.INVALID, "token mismatch"), header


def test_gitlab_non_ascii_token_and_unencodable_header():
    assert sig.verify_gitlab("jeton-é", "jeton-é").ok
    # a header that is not valid text is refused like any wrong token, never an error
    assert sig.verify_gitlab("tok-1", "tok-1\ud800") == sig.Check(Outcome.INVALID, "token mismatch")


# --- Alertmanager: Authorization: Bearer <token> ------------------------------------------------

def test_bearer_token_accepted_with_any_case_of_the_scheme():
    for header in ("Bearer am-token", "bearer am-token", "BEARER am-token", "  Bearer am-token  ",
                   "Bearer   am-token"):
        assert sig.verify_bearer("am-token", header).ok, header


def test_bearer_refusal_reasons():
    assert sig.verify_bearer("am-token", None) == sig.Check(Outcome.MISSING, "no Authorization header")
    assert sig.verify_bearer("am-token", "") == sig.Check(Outcome.MISSING, "no Authorization header")
    assert sig.verify_bearer(None, None).outcome is Outcome.MISSING
    for token in (None, ""):
        assert sig.verify_bearer(token, "Bearer am-token") == sig.Check(Outcome.INVALID, "source not configured")
    not_bearer = sig.Check(Outcome.INVALID, "Authorization scheme is not Bearer")
    for header in ("Basic am-token", "Token am-token", "Beareram-token", "am-token", "Bearer\tam-token"):
        assert sig.verify_bearer("am-token", header) == not_bearer, header
    assert sig.verify_bearer("am-token", "Basic wrong") == not_bearer
    mismatch = sig.Check(Outcome.INVALID, "token mismatch")
    for header in ("Bearer wrong", "Bearer am-token2", "Bearer am-toke", "Bearer AM-TOKEN", "Bearer",
                   "Bearer am-token\ud800"):
        assert sig.verify_bearer("am-token", header) == mismatch, header


def test_bearer_token_may_hold_spaces_and_non_ascii():
    assert sig.verify_bearer("a b", "Bearer a b").ok
    assert sig.verify_bearer("jeton-é", "Bearer jeton-é").ok
    assert sig.verify_bearer("a b", "Bearer a").outcome is Outcome.INVALID


# --- Generic: HMAC over "{timestamp}.{body}" ----------------------------------------------------

def test_generic_signs_timestamp_dot_body():
    body, ts = b'{"service":"checkout"}', "1700000000"
    assert sig.generic_message(ts, body) == b'1700000000.{"service":"checkout"}'
    expected = "sha256=" + hmac.new(b"k", b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sig.sign_generic("k", ts, body) == expected
    assert sig.sign_generic(b"k", 1700000000, body) == expected
    assert sig.verify_generic(b"k", ts, expected, body, now=1700000000).ok


def test_generic_refusal_reasons():
    body, ts = b"{}", "1700000000"
    header = sig.sign_generic("k", ts, body)
    missing = sig.Check(Outcome.MISSING, "no X-Canaryflow-Signature or X-Canaryflow-Timestamp header")
    assert sig.verify_generic("k", None, header, body, now=1700000000) == missing
    assert sig.verify_generic("k", "", header, body, now=1700000000) == missing
    assert sig.verify_generic("k", ts, None, body, now=1700000000) == missing
    assert sig.verify_generic("k", ts, "", body, now=1700000000) == missing
    assert sig.verify_generic(None, None, None, body, now=1700000000) == missing
    for secret in (None, "", b""):
        assert sig.verify_generic(secret, ts, header, body, now=1700000000) == sig.Check(
            Outcome.INVALID, "source not configured"), secret
    mismatch = sig.Check(Outcome.INVALID, "HMAC mismatch")
    assert sig.verify_generic("other", ts, header, body, now=1700000000) == mismatch  # wrong secret
    assert sig.verify_generic("k", ts, header, b"{ }", now=1700000000) == mismatch  # tampered body
    assert sig.verify_generic("k", "1700000001", header, body, now=1700000000) == mismatch  # other timestamp
    assert sig.verify_generic("k", ts, "sha1=" + header[7:], body, now=1700000000) == mismatch  # wrong format
    not_seconds = sig.Check(Outcome.INVALID, "timestamp is not unix seconds")
    for bad in ("-5", "1e9", "17000000.5", " 1700000000", "0x10"):
        assert sig.verify_generic("k", bad, sig.sign_generic("k", bad, body), body, now=1700000000) == not_seconds


def test_generic_timestamp_has_at_most_twelve_digits():
    body, twelve, thirteen = b"{}", "100000000000", "1000000000000"
    assert sig.verify_generic("k", twelve, sig.sign_generic("k", twelve, body), body, now=100000000000).ok
    assert sig.verify_generic("k", thirteen, sig.sign_generic("k", thirteen, body), body,
                              now=1000000000000) == sig.Check(Outcome.INVALID, "timestamp is not unix seconds")


def test_generic_stale_and_future_reasons_give_the_skew_and_window():
    body, ts = b"{}", 1_700_000_000
    header = sig.sign_generic("k", ts, body)
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 301) == sig.Check(
        Outcome.INVALID, "timestamp 301 s old (window 300 s)")
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 301) == sig.Check(
        Outcome.INVALID, "timestamp 301 s in the future (window 300 s)")
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 86400) == sig.Check(
        Outcome.INVALID, "timestamp 86400 s old (window 300 s)")


def test_generic_window_is_configurable_and_fractional_clock_counts():
    body, ts = b"{}", 1_700_000_000
    header = sig.sign_generic("k", ts, body)
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 10, tolerance=10).ok
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 10, tolerance=10).ok
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 11, tolerance=10) == sig.Check(
        Outcome.INVALID, "timestamp 11 s old (window 10 s)")
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 11, tolerance=10) == sig.Check(
        Outcome.INVALID, "timestamp 11 s in the future (window 10 s)")
    # Just outside the window reads as outside it: the skew is rounded up, never down to the window.
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 300.5) == sig.Check(
        Outcome.INVALID, "timestamp 301 s old (window 300 s)")
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 300.5) == sig.Check(
        Outcome.INVALID, "timestamp 301 s in the future (window 300 s)")
    assert sig.verify_generic("k", str(ts), header, body, now=ts - 300.5).outcome is Outcome.INVALID
    assert sig.verify_generic("k", str(ts), header, body, now=ts + 299.5).ok


def test_generic_checks_the_signature_before_freshness():
    body, ts = b"{}", "1700000000"
    forged = "sha256=" + "0" * 64
    assert sig.verify_generic("k", ts, forged, body, now=1800000000) == sig.Check(Outcome.INVALID, "HMAC mismatch")
    assert sig.verify_generic("k", "1e9", forged, body, now=1800000000).reason == "timestamp is not unix seconds"


def test_generic_an_old_signature_cannot_be_replayed_with_a_fresh_timestamp():
    body, old = b'{"service":"checkout"}', "1700000000"
    header = sig.sign_generic("k", old, body)
    later = 1700000000 + 3600
    assert sig.verify_generic("k", old, header, body, now=later).reason == "timestamp 3600 s old (window 300 s)"
    assert sig.verify_generic("k", str(later), header, body, now=later).reason == "HMAC mismatch"


def test_a_rotated_out_secret_no_longer_verifies():
    body, ts = b"{}", "1700000000"
    assert sig.verify_github("new", sig.sign_github("old", body), body).reason == "HMAC mismatch"
    assert sig.verify_gitlab("new", "old").reason == "token mismatch"
    assert sig.verify_bearer("new", "Bearer old").reason == "token mismatch"
    assert sig.verify_generic("new", ts, sig.sign_generic("old", ts, body), body, now=1700000000).reason == (
        "HMAC mismatch")


# --- constant time and secrecy ------------------------------------------------------------------

def test_every_scheme_compares_through_compare_digest_on_equal_lengths(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body = b"{}"
    assert sig.verify_github("k", sig.sign_github("k", body), body).ok
    assert not sig.verify_github("k", sig.sign_github("x", body), body).ok
    assert sig.verify_generic("k", "5", sig.sign_generic("k", "5", body), body, now=5).ok
    assert not sig.verify_generic("k", "5", sig.sign_generic("x", "5", body), body, now=5).ok
    # the token's length does not decide how long the comparison takes
    assert not sig.verify_gitlab("a-much-longer-token-than-presented", "short").ok
    assert sig.verify_gitlab("tok", "tok").ok
    assert not sig.verify_bearer("a-much-longer-token-than-presented", "Bearer short").ok
    # a wrong scheme is still compared, not answered early
    assert not sig.verify_bearer("tok", "Basic tok").ok
    assert len(calls) == 8
    assert all(a == b for a, b in calls), calls


def test_no_refusal_carries_the_secret_the_presented_value_or_the_body():
    secret, presented, body, ts = "hunter2-secret", "hunter2-guess", b"payload-bytes", "1700000000"
    signed = sig.sign_generic(secret, ts, body)
    results = [
        sig.verify_github(secret, signed, body),
        sig.verify_github(secret, None, body),
        sig.verify_github(None, signed, body),
        sig.verify_gitlab(secret, presented),
        sig.verify_gitlab(None, presented),
        sig.verify_bearer(secret, "Bearer " + presented),
        sig.verify_bearer(secret, "Basic " + secret),
        sig.verify_generic(secret, ts, signed[:-2] + "00", body, now=1700000000),
        sig.verify_generic(secret, ts, signed, body, now=1800000000),
        sig.verify_generic(secret, ts, signed, body, now=1600000000),
        sig.verify_generic(secret, "x" + presented, signed, body, now=1700000000),
    ]
    for result in results:
        assert not result.ok
        for text in (result.reason, repr(result), str(result)):
            assert "hunter2" not in text and signed[7:] not in text and "payload" not in text, text
