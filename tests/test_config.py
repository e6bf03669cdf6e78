from __future__ import annotations

from pathlib import Path

import pytest

from loa.config import ConfigError, load_config
from loa.core.zones import ZoneError, ZoneTree


def test_embedded_defaults_need_no_file() -> None:
    cfg = load_config(None, env={})
    assert (cfg.listen_host, cfg.listen_port) == ("127.0.0.1", 8080)
    tree = ZoneTree(cfg.zones)
    assert [z.id for z in tree.roots()] == ["huyen"]
    assert [z.id for z in tree.subtree("an-binh")] == ["an-binh", "an-binh-1", "an-binh-2"]


def test_toml_then_environment(tmp_path: Path) -> None:
    path = tmp_path / "loa.toml"
    path.write_text(
        'listen = "0.0.0.0:9000"\n'
        "[source]\npassword = \"from-file\"\n"
        "[mounts.studio]\npassword = \"studio-pw\"\n"
        "[audio]\nopus_bitrate_bps = 24000\n"
        '[[zones]]\nid = "tinh"\nname = "Tỉnh"\n'
        '[[zones]]\nid = "xa"\nname = "Xã"\nparent = "tinh"\n'
        '[[endpoints]]\nid = "e1"\nzone = "xa"\n'
        '[mqtt]\nlisten = "127.0.0.1:1990"\ntopic_root = "tinh"\n'
    )
    cfg = load_config(path, env={"LOA_LISTEN": "127.0.0.1:9100",
                                 "LOA_SOURCE_PASSWORD": "from-env",
                                 "LOA_MQTT_LISTEN": "127.0.0.1:1991"})
    assert cfg.listen_port == 9100
    assert (cfg.mqtt.listen_port, cfg.mqtt.topic_root) == (1991, "tinh")
    assert cfg.endpoints[0].zone_id == "xa"
    assert cfg.source_password == "from-env"
    assert cfg.mount_passwords == {"studio": "studio-pw"}
    assert cfg.opus_bitrate_bps == 24000
    assert [z.id for z in cfg.zones] == ["tinh", "xa"]
    assert "from-env" not in str(cfg.redacted())


@pytest.mark.parametrize("text,message", [
    ('listen = "nonsense"', "HOST:PORT"),
    ("[audio]\nopus_bitrate_bps = 1", "opus_bitrate_bps"),
    ("this is = = not toml", "not valid TOML"),
    ("[[endpoints]]\nid = \"x\"", "zone"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_zone_tree_errors() -> None:
    from loa.core.zones import Zone

    with pytest.raises(ZoneError, match="unknown parent"):
        ZoneTree([Zone("a", "A", "ghost")])
    with pytest.raises(ZoneError, match="twice"):
        ZoneTree([Zone("a", "A"), Zone("a", "A")])
    with pytest.raises(ZoneError, match="own ancestor"):
        ZoneTree([Zone("r", "R"), Zone("a", "A", "b"), Zone("b", "B", "a")])
