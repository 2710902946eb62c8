"""The node's own small images (pause, CoreDNS, a shell for the volume provisioner's helper
pods), written as docker-archive tarballs straight from host files: each is one layer of a
few static binaries, so neither a registry nor an image builder is needed to make them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Image:
    ref: str  # e.g. novacron.local/pause:1
    files: dict[str, Path]  # path in the image -> host file (copied with its mode)
    links: dict[str, str]  # path in the image -> symlink target
    entrypoint: list[str]
    user: str = "65532:65532"


def _layer(image: Image) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in [*image.files, *image.links]} - {"/", "."})
        for d in [*dirs, "tmp"]:
            info = tarfile.TarInfo(d.lstrip("/"))
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755, 0
            tar.addfile(info)
        for path, host in sorted(image.files.items()):
            data = host.read_bytes()
            info = tarfile.TarInfo(path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), host.stat().st_mode & 0o777, 0
            tar.addfile(info, io.BytesIO(data))
        for path, target in sorted(image.links.items()):
            info = tarfile.TarInfo(path.lstrip("/"))
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)
    return buf.getvalue()


def write_archive(image: Image, out_dir: Path) -> Path:
    """A docker-archive of ``image`` in ``out_dir``, reused while its inputs are unchanged."""
    key = hashlib.sha256(image.ref.encode())
    for path, host in sorted(image.files.items()):
        st = host.stat()
        key.update(f"{path}:{host}:{st.st_size}:{st.st_mtime_ns}".encode())
    key.update(json.dumps([image.links, image.entrypoint, image.user], sort_keys=True).encode())
    name = image.ref.rsplit("/", 1)[-1].replace(":", "-")
    out = out_dir / f"{name}-{key.hexdigest()[:12]}.tar"
    if out.exists():
        return out
    layer = _layer(image)
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": image.entrypoint, "User": image.user, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "novacron realnode images.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [image.ref], "Layers": ["layer.tar"]}]
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for member, data in (
            ("layer.tar", layer),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(manifest).encode()),
        ):
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)
    for old in out_dir.glob(f"{name}-*.tar"):
        if old != out:
            old.unlink(missing_ok=True)
    return out
