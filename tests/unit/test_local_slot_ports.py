"""A service slot's port belongs to its controller from the platform's start: no other program can
take it between releases, and a program answering there in the service's place is never taken for
it. Otherwise a foreign server on a canary's port is probed ready, scraped under the service's
labels and judged as the canary (a bad version promoted on another program's numbers)."""

from __future__ import annotations

import errno
import os
import socket

import httpx
import pytest

from canaryflow.local import procs
from canaryflow.local.catalog import parse_catalog
from canaryflow.local.controller import Controller, Track


def plain_bind(port: int) -> None:
    """How another program takes a port (uvicorn and most servers set SO_REUSEADDR only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen()


def test_a_reserved_port_is_refused_to_another_program_and_open_to_the_owners_listener():
    port = procs.free_port()
    reservation = procs.reserve_port(port)
    try:
        with pytest.raises(OSError) as refused:
            plain_bind(port)
        assert refused.value.errno == errno.EADDRINUSE
        listener = procs.shared_listener(port)
        try:
            listener.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
                served, _ = listener.accept()  # the listener gets the connection, not the reservation
                client.sendall(b"ping")
                assert served.recv(4) == b"ping"
                served.close()
        finally:
            listener.close()
        with pytest.raises(OSError):  # still held after the listener is gone
            plain_bind(port)
    finally:
        reservation.close()
    plain_bind(port)  # released: anyone may bind it again


def test_reserving_a_port_another_program_holds_fails():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        with pytest.raises(OSError):
            procs.reserve_port(other.getsockname()[1])


def controller(tmp_path, slots) -> Controller:
    catalog = parse_catalog({"service": "checkout", "versions": {"v1": {}}})
    return Controller(service="checkout", catalog=catalog, catalog_path=tmp_path / "c.yaml", log_dir=tmp_path,
                      slot_ports=slots)


def test_the_controller_holds_its_slots_until_shutdown_and_names_a_taken_one(tmp_path):
    slots = (procs.free_port(), procs.free_port())
    ctl = controller(tmp_path, slots)
    ctl.reserve_slots()
    for port in slots:
        with pytest.raises(OSError):
            plain_bind(port)
    ctl.shutdown()
    for port in slots:
        plain_bind(port)

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        other.bind(("127.0.0.1", slots[1]))
        other.listen()
        taken = controller(tmp_path, slots)
        with pytest.raises(RuntimeError, match=f"service 'checkout': slot port {slots[1]} is taken"):
            taken.reserve_slots()
        plain_bind(slots[0])  # the slot it had reserved before failing is let go


class FakeProc:
    pid = os.getpid()

    def poll(self):
        return None


@pytest.mark.parametrize("status, body, answers", [
    (200, {"ready": True, "version": "v2", "pid": os.getpid()}, True),
    (200, {"ready": True, "version": "v2", "pid": os.getpid() + 1}, False),  # someone else on the port
    (200, {"ready": True, "version": "v2"}, False),                           # a server that is not ours
    (200, ["ready"], False),
    (503, {"ready": False, "version": "v2", "pid": os.getpid()}, False),
])
def test_only_the_spawned_process_answers_for_its_track(status, body, answers):
    track = Track("v2", 1, FakeProc())  # type: ignore[arg-type]
    assert track.answers(httpx.Response(status, json=body)) is answers


def test_a_non_json_ready_answer_is_not_the_track():
    track = Track("v2", 1, FakeProc())  # type: ignore[arg-type]
    assert track.answers(httpx.Response(200, text="OK")) is False
