"""Bad scheduler settings are one line within the connect timeout (a port that accepts TCP but
speaks something else must not hang us), and nothing is created before the cluster is up."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading

import pytest
from reliability_data import digest, no_output, refused


def _commands(map_store, tmp_path):
    """One command of each kind that writes an output, with the outputs to check afterwards."""
    return {
        "separate": (["separate", map_store, "--out", tmp_path / "sep.zarr"], tmp_path / "sep.zarr"),
        "export": (["export", map_store, tmp_path / "o.up2"], tmp_path / "o.up2"),
    }


@pytest.mark.parametrize("command", ["separate", "export"])
def test_address_that_is_no_address(cli, map_store, tmp_path, command):
    args, out = _commands(map_store, tmp_path)[command]
    refused(cli(*args, "--scheduler-address", "notanaddress"), 2, "notanaddress")
    no_output(out)


def test_scheduler_file_that_is_not_json(cli, map_store, tmp_path):
    bad = tmp_path / "scheduler.json"
    bad.write_text('{"address": ')
    before = digest(map_store)
    args, out = _commands(map_store, tmp_path)["separate"]
    refused(cli(*args, "--scheduler-file", bad), 2, "not valid JSON")
    no_output(out)
    assert digest(map_store) == before


class _Silent(socketserver.BaseRequestHandler):
    def handle(self):  # accept, read, never answer
        self.request.settimeout(10)
        try:
            self.request.recv(1024)
            threading.Event().wait(10)
        except OSError:
            pass


class _Http(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(params=["silent", "http"])
def foreign_server(request):
    """A TCP port on 127.0.0.1 that is not a Dask scheduler."""
    handler = _Silent if request.param == "silent" else _Http
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"tcp://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_port_that_does_not_speak_dask_fails_within_the_timeout(cli, map_store, tmp_path, foreign_server):
    args, out = _commands(map_store, tmp_path)["export"]
    refused(cli(*args, "--scheduler-address", foreign_server, "--connect-timeout", "1"), 2,
            foreign_server, "no Dask scheduler answered")
    no_output(out)


def test_separate_creates_nothing_before_the_cluster_is_up(cli, map_store, tmp_path):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Silent)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        args, out = _commands(map_store, tmp_path)["separate"]
        refused(cli(*args, "--scheduler-address", f"127.0.0.1:{server.server_address[1]}",
                    "--connect-timeout", "1"), 2, "no Dask scheduler answered")
        no_output(out)
    finally:
        server.shutdown()
        server.server_close()


def test_closed_port(cli, map_store, tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args, out = _commands(map_store, tmp_path)["export"]
    refused(cli(*args, "--scheduler-address", f"tcp://127.0.0.1:{port}", "--connect-timeout", "2"), 2,
            "cannot reach")
    no_output(out)


@pytest.mark.filterwarnings("ignore:Port 8787 is already in use")
def test_scheduler_without_workers(cli, map_store, tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=None) as empty:
        args, out = _commands(map_store, tmp_path)["export"]
        refused(cli(*args, "--scheduler-address", empty.scheduler_address, "--worker-timeout", "1"), 2,
                "no worker")
    no_output(out)
