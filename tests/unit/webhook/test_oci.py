"""OCI image references as docker reads them: what is accepted and what is refused."""

from __future__ import annotations

import pytest

from canaryflow.webhook.oci import MAX_NAME_LENGTH, is_image_reference


@pytest.mark.parametrize("reference", [
    "nginx", "library/nginx:1.25", "ghcr.io/acme/checkout:v5", "registry.example/acme/orders:v9.0.0",
    "localhost:5000/team/app", "localhost/app:latest", "Registry.Example:443/a/b_c__d--e:TAG_1.x",
    "[::1]:5000/x:y", "a/b@sha256:" + "0" * 64, "a/b:v1@sha512:" + "f" * 128,
])
def test_references_docker_would_pull(reference):
    assert is_image_reference(reference)


@pytest.mark.parametrize("value", [
    "", "Nginx", "UPPER/case", "a b", "ghcr.io/acme/checkout:", ":v1", "a//b", "a/", "-a", "a:b:c",
    "a:" + "x" * 129, "a@sha256:abc", "ghcr.io/acme/checkout:v1\n", "\ud800", "ghcr.io/acme/caf\u00e9",
    "a" * (MAX_NAME_LENGTH + 1), float("nan"), float("inf"), 5, {"name": "nginx"}, ["nginx"], None, True,
])
def test_anything_else_is_not_an_image(value):
    assert not is_image_reference(value)


def test_long_strings_shaped_against_the_pattern_are_refused():
    # Inputs aimed at the nested repetitions of the grammar; the length cap bounds the work.
    for value in ("a" + "-a" * 400 + "!", "a." * 300 + "!", "A-" * 300 + "/x", "[" + ":" * 700):
        assert not is_image_reference(value)
