"""The two backup targets behave the same: a directory and a real MinIO server on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from novacron_core.dr.targets import FileTarget, S3Target, Target, TargetError, open_target
from tests.dr.servers import minio_server


@pytest.fixture(params=["dir", "minio"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    if request.param == "dir":
        yield FileTarget(tmp_path / "t")
        return
    with minio_server(tmp_path) as m:
        yield S3Target("bkp", "eu/one", m.endpoint, m.access, m.secret)


def test_objects_round_trip_list_in_order_and_delete(target: Target) -> None:
    target.put("g/log/2.bin", b"two")
    target.put("g/log/1.bin", b"one")
    target.put("h/full/1.bin", b"other group")
    assert target.list("g/") == ["g/log/1.bin", "g/log/2.bin"]
    assert target.get("g/log/1.bin") == b"one"
    target.put("g/log/1.bin", b"replaced")
    assert target.get("g/log/1.bin") == b"replaced"
    target.delete("g/log/1.bin")
    assert target.list("g/") == ["g/log/2.bin"]
    with pytest.raises(TargetError):
        target.get("g/log/1.bin")


def test_a_directory_target_keeps_objects_inside_it(tmp_path: Path) -> None:
    t = FileTarget(tmp_path / "t")
    with pytest.raises(ValueError, match="escapes"):
        t.put("../outside", b"x")
    assert not (tmp_path / "outside").exists()


def test_target_urls() -> None:
    assert isinstance(open_target("file:///tmp/x"), FileTarget)
    assert isinstance(open_target("/tmp/x"), FileTarget)
    with pytest.raises(ValueError, match="unsupported"):
        open_target("ftp://host/x")
