"""serve and view restart at once after a stop with connections open (issue #21, item 7)."""

from __future__ import annotations

import socket

import pytest

from portrait3d.errors import UserError
from portrait3d.viewer import check_port_free


def _stopped_server_with_a_lingering_connection() -> int:
    """A port whose server closed first while a client was connected (its side lingers in TIME_WAIT)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn (serve) and viser (view) bind
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = server.accept()
    conn.close()  # the server closes first, as a stopped server does: TIME_WAIT on its side
    server.close()
    client.close()
    return port


def test_port_check_passes_right_after_a_stop_and_refuses_a_live_server():
    port = _stopped_server_with_a_lingering_connection()
    # What the old check did: a plain bind fails here for up to a minute.
    with socket.socket() as plain, pytest.raises(OSError):
        plain.bind(("127.0.0.1", port))
    check_port_free("127.0.0.1", port)  # the server itself binds with SO_REUSEADDR: free
    with socket.socket() as live:
        live.bind(("127.0.0.1", 0))
        live.listen()
        with pytest.raises(UserError, match=f"port {live.getsockname()[1]}"):
            check_port_free("127.0.0.1", live.getsockname()[1])
