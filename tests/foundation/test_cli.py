from __future__ import annotations

import socket

from click.testing import CliRunner

from novacron_core import __version__
from novacron_core.cli import main


def _unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # closed again: nothing listens there


def test_version_prints_the_package_version() -> None:
    res = CliRunner().invoke(main, ["version"])
    assert res.exit_code == 0
    assert __version__ in res.output


def test_help_lists_the_commands_and_how_to_start() -> None:
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for word in ("demo", "status", "vms", "version"):
        assert word in res.output


def test_status_against_nothing_says_what_to_do() -> None:
    res = CliRunner().invoke(main, ["status", "--url", _unused_url()])
    assert res.exit_code == 1
    assert "no node answered" in res.output
    assert "novacron demo" in res.output


def test_vms_list_against_nothing_fails_cleanly() -> None:
    res = CliRunner().invoke(main, ["vms", "list", "--url", _unused_url()])
    assert res.exit_code == 1
    assert "Traceback" not in res.output
    assert "Connection refused" in res.output or "refused" in res.output.lower()


def test_vms_create_validates_arguments_before_calling_anything() -> None:
    res = CliRunner().invoke(main, ["vms", "create", "vm1", "--cpus", "0"])
    assert res.exit_code == 2
    assert "--cpus" in res.output
