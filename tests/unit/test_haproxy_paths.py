"""`testkit.ingress.haproxy_state_environ`: HAProxy's admin socket path stays within the
97 bytes HAProxy accepts once Serve adds the node's id (56 hex digits) to it."""

from pathlib import Path

import pytest

from testkit.ingress import haproxy_state_environ


def test_a_short_directory_gets_every_haproxy_file(tmp_path: Path) -> None:
    state = Path("/tmp") / tmp_path.name[:8] / "haproxy"  # 29 characters at most
    try:
        environ = haproxy_state_environ(state)
        assert environ["RAY_SERVE_HAPROXY_SOCKET_PATH"] == f"{state}/admin.sock"
        assert environ["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] == f"{state}/haproxy.cfg"
        socket_with_node = Path(environ["RAY_SERVE_HAPROXY_SOCKET_PATH"]).parent / ("f" * 56)
        assert len(str(socket_with_node / "admin.sock")) <= 97
        assert state.is_dir()
    finally:
        state.rmdir()
        state.parent.rmdir()


def test_a_directory_too_long_for_the_socket_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    state = tmp_path / "haproxy"  # pytest's temporary directories are longer than 29
    assert len(str(state)) > 29
    with pytest.raises(ValueError, match="at most 29 characters"):
        haproxy_state_environ(state)
    assert not state.exists()
