"""Where the API server is and who we are to it: a kubeconfig (client certificates, a
token or a token file) or, inside a pod, the mounted ServiceAccount token."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]
SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass
class Config:
    server: str
    ssl: ssl.SSLContext
    token: str | None = None
    token_file: Path | None = None
    # raw PEM kept so kopf's watcher logs in with exactly the same identity
    ca_pem: bytes | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None

    def current_token(self) -> str | None:
        if self.token_file is not None:
            return self.token_file.read_text().strip()  # projected tokens rotate
        return self.token

    def auth_header(self) -> dict[str, str]:
        token = self.current_token()
        return {"Authorization": f"Bearer {token}"} if token else {}


def _materialise(user: Obj, key: str, d: Path) -> str | None:
    if user.get(f"{key}-data"):
        p = d / key
        p.write_bytes(base64.b64decode(user[f"{key}-data"]))
        return str(p)
    value = user.get(key)
    return str(value) if value else None


def load_config(kubeconfig: str | None = None) -> Config:
    """From KUBECONFIG (client certs or token) or, inside a pod, the mounted SA token."""
    kubeconfig = kubeconfig or os.environ.get("KUBECONFIG")
    if not kubeconfig and (SA_DIR / "token").exists():
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        ca_pem = (SA_DIR / "ca.crt").read_bytes()
        return Config(f"https://{host}:{port}", ctx, token_file=SA_DIR / "token", ca_pem=ca_pem)
    doc = yaml.safe_load(Path(kubeconfig or Path.home() / ".kube/config").read_text())
    current = next(c for c in doc["contexts"] if c["name"] == doc["current-context"])["context"]
    cluster = next(c for c in doc["clusters"] if c["name"] == current["cluster"])["cluster"]
    user = next(u for u in doc["users"] if u["name"] == current["user"])["user"]
    with tempfile.TemporaryDirectory() as tmp:  # *-data fields only need to exist while loading
        d = Path(tmp)
        ca = _materialise(cluster, "certificate-authority", d)
        ctx = ssl.create_default_context(cafile=ca)
        cert, key = _materialise(user, "client-certificate", d), _materialise(user, "client-key", d)
        if cert and key:
            ctx.load_cert_chain(cert, key)
        pems = [Path(p).read_bytes() if p else None for p in (ca, cert, key)]
    token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
    return Config(
        cluster["server"],
        ctx,
        token=user.get("token"),
        token_file=token_file,
        ca_pem=pems[0],
        cert_pem=pems[1],
        key_pem=pems[2],
    )
