"""The real node's own images: docker-archives written from host files (no builder)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

from novacron_operator.realnode.images import Image, write_archive


def _members(archive: Path) -> dict[str, bytes]:
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_archive_is_a_docker_archive_whose_digests_match(tmp_path: Path) -> None:
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF fake")
    binary.chmod(0o755)
    image = Image("novacron.local/pause:1", {"/pause": binary}, {"/bin/sh": "/pause"}, ["/pause"])
    archive = write_archive(image, tmp_path / "out")
    files = _members(archive)
    manifest = json.loads(files["manifest.json"])
    assert manifest[0]["RepoTags"] == ["novacron.local/pause:1"]
    config = json.loads(files[manifest[0]["Config"]])
    layer = files[manifest[0]["Layers"][0]]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    assert (
        manifest[0]["Config"] == hashlib.sha256(files[manifest[0]["Config"]]).hexdigest() + ".json"
    )
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["config"]["User"] == "65532:65532"
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["pause"].mode == 0o755
    assert members["bin/sh"].issym()
    assert members["bin/sh"].linkname == "/pause"
    assert members["tmp"].isdir()
    assert members["tmp"].mode == 0o1777


def test_archive_is_reused_until_an_input_changes(tmp_path: Path) -> None:
    binary = tmp_path / "coredns"
    binary.write_bytes(b"v1")
    image = Image("novacron.local/coredns:1", {"/coredns": binary}, {}, ["/coredns"])
    first = write_archive(image, tmp_path / "out")
    stamp = first.stat().st_mtime_ns
    assert write_archive(image, tmp_path / "out") == first
    assert first.stat().st_mtime_ns == stamp
    binary.write_bytes(b"v2, a rebuilt binary")
    second = write_archive(image, tmp_path / "out")
    assert second != first
    assert not first.exists(), "the stale archive is removed"
