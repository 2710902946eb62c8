"""Tunnel specs and IPsec configuration (no root needed)."""

from __future__ import annotations

import pytest

from novacron_core.tunnels.spec import TunnelSpec, generate_private_key, public_key, secret_manifest


def test_bad_specs_name_the_field():
    with pytest.raises(ValueError, match="kind"):
        TunnelSpec("nctx", "ipip", "1.2.3.4", "1.2.3.5", "198.19.253.1/30")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="remote"):
        TunnelSpec("nctx", "gre", "1.2.3.4", "nope", "198.19.253.1/30")
    with pytest.raises(ValueError, match="key"):
        TunnelSpec("nctx", "vxlan", "1.2.3.4", "1.2.3.5", "198.19.253.1/30", 0)
    with pytest.raises(ValueError, match="peer_public_key"):
        TunnelSpec("nctx", "wireguard", "1.2.3.4", "1.2.3.5", "198.19.253.1/30",
                   private_key=generate_private_key(), peer_public_key="short")  # fmt: skip
    with pytest.raises(ValueError, match="name"):
        TunnelSpec("eth0", "gre", "1.2.3.4", "1.2.3.5", "198.19.253.1/30")


def test_ipsec_is_configuration_generation_only():
    from novacron_core.tunnels.ipsec import IpsecSpec, swanctl_conf

    spec = IpsecSpec("east-west", "198.19.254.1", "198.19.254.2", "east", "west",
                     "198.19.253.0/30", "198.19.252.0/30", 7, psk_secret="s3cret")  # fmt: skip
    conf = swanctl_conf(spec)
    assert "remote_addrs = 198.19.254.2" in conf
    assert "if_id_out = 7" in conf
    assert "auth = psk" in conf
    assert 'secret = "s3cret"' in conf
    assert conf.count("{") == conf.count("}")
    with pytest.raises(ValueError, match="if_id"):
        IpsecSpec("x", "1.2.3.4", "1.2.3.5", "a", "b", "10.0.0.0/30", "10.0.1.0/30", 0)


def test_secret_manifest_holds_each_members_key_pair():
    k = generate_private_key()
    s = secret_manifest("fed-wireguard", "agents", {"us-east1-n1": k})
    assert s["stringData"]["us-east1-n1.key"] == k
    assert s["stringData"]["us-east1-n1.pub"] == public_key(k)
    assert len(public_key(k)) == 44
