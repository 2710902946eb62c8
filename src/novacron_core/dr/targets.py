"""Where backups are kept: a filesystem path (a PVC) or an S3-compatible bucket (minio-py).

Both store named objects; a put is atomic (a reader sees the whole object or none): the
filesystem writes a temp file, fsyncs it and renames it; S3 PUTs are atomic by definition.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse


class TargetError(RuntimeError):
    """The target could not be reached or refused the operation."""


class Target(Protocol):
    url: str

    def put(self, key: str, data: bytes) -> None: ...

    def get(self, key: str) -> bytes: ...

    def list(self, prefix: str) -> list[str]: ...

    def delete(self, key: str) -> None: ...


class FileTarget:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = f"file://{self.root}"

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in p.parents:
            raise ValueError(f"object name escapes the target: {key!r}")
        return p

    def put(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise TargetError(f"{self.url}: no object {key}") from None

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.exists():
            return []
        return sorted(
            str(p.relative_to(self.root))
            for p in base.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


class S3Target:
    """``s3://bucket/prefix`` at ``endpoint`` (``http://host:port``; https when it says so)."""

    def __init__(self, bucket: str, prefix: str, endpoint: str, access: str, secret: str) -> None:
        from minio import Minio  # the dr extra: imported only when S3 is used

        ep = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        self.client = Minio(
            ep.netloc, access_key=access, secret_key=secret, secure=ep.scheme == "https"
        )
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}"
        try:
            if not self.client.bucket_exists(bucket):
                self.client.make_bucket(bucket)
        except Exception as e:  # urllib3/minio errors: name the endpoint
            raise TargetError(f"{endpoint}: cannot use bucket {bucket}: {e}") from None

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(self.bucket, self._name(key), io.BytesIO(data), len(data))

    def get(self, key: str) -> bytes:
        from minio.error import S3Error

        try:
            resp = self.client.get_object(self.bucket, self._name(key))
        except S3Error as e:
            raise TargetError(f"{self.url}: {key}: {e.code}") from None
        try:
            return resp.read()
        finally:
            resp.close()
            resp.release_conn()

    def list(self, prefix: str) -> list[str]:
        cut = len(self.prefix) + 1 if self.prefix else 0
        objs = self.client.list_objects(self.bucket, prefix=self._name(prefix), recursive=True)
        return sorted(str(o.object_name)[cut:] for o in objs)

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, self._name(key))


def open_target(url: str, endpoint: str | None = None) -> Target:
    """``/path`` or ``file:///path``: a directory; ``s3://bucket/prefix``: S3 at ``endpoint``
    with credentials from NOVACRON_S3_ACCESS_KEY/SECRET_KEY (or AWS_ACCESS_KEY_ID/...)."""
    u = urlparse(url)
    if u.scheme in ("", "file"):
        return FileTarget(u.path if u.scheme else url)
    if u.scheme == "s3":
        ep = endpoint or os.environ.get("NOVACRON_S3_ENDPOINT")
        if not ep:
            raise ValueError("an s3:// target needs --s3-endpoint (or NOVACRON_S3_ENDPOINT)")
        env = os.environ
        access = env.get("NOVACRON_S3_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID")
        secret = env.get("NOVACRON_S3_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY")
        if not access or not secret:
            raise ValueError(
                "an s3:// target needs NOVACRON_S3_ACCESS_KEY and NOVACRON_S3_SECRET_KEY"
            )
        return S3Target(u.netloc, u.path, ep, access, secret)
    raise ValueError(f"unsupported backup target {url!r}: a path, file:// or s3:// URL")
