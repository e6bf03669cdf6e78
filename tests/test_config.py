from __future__ import annotations

from pathlib import Path

import pytest

from loa.config import ConfigError, load_config
from loa.core.zones import ZoneError, ZoneTree
from loa.playout.zone_channel import FanoutSettings


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
    ("[fanout]\nhttp_batch_large_ms = 1020", "http_batch_large_ms"),
    ("[fanout]\nhttp_batch_large_above = -1", "http_batch_large_above"),
    ("[fanout]\nhttp_batch_large_above = 199",
     r"http_batch_large_above \(199\) must not be less than http_batch_above \(200\)"),
    ("[fanout]\nhttp_batch_above = 500\nhttp_batch_large_above = 400",
     "must not be less than http_batch_above"),
])
def test_bad_config_is_a_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, env={})


def test_fanout_batch_tiers(tmp_path: Path) -> None:
    cfg = load_config(None, env={})
    assert (cfg.http_batch_ms, cfg.http_batch_above) == (40, 200)
    assert (cfg.http_batch_large_ms, cfg.http_batch_large_above) == (80, 400)
    path = tmp_path / "loa.toml"
    path.write_text("[fanout]\nhttp_batch_above = 300\nhttp_batch_large_ms = 120\n"
                    "http_batch_large_above = 300\n")
    cfg = load_config(path, env={})
    assert (cfg.http_batch_above, cfg.http_batch_large_ms, cfg.http_batch_large_above) == (
        300, 120, 300)  # equal thresholds: the large batch from the first
    # only the first threshold raised past the second's default: the second stays above it
    path.write_text("[fanout]\nhttp_batch_above = 500\n")
    cfg = load_config(path, env={})
    assert (cfg.http_batch_above, cfg.http_batch_large_above) == (500, 1000)  # twice
    # a batch in ms is whole packets, rounded down; 0 ms turns the second tier off
    path.write_text("[fanout]\nhttp_batch_ms = 50\nhttp_batch_large_ms = 0\n")
    cfg = load_config(path, env={})
    settings = FanoutSettings({}, 0, 0, cfg.http_batch_ms, cfg.http_batch_above,
                              cfg.http_batch_large_ms, cfg.http_batch_large_above)
    assert settings.http_batch_ladder() == ((200, 2),)


def test_zone_tree_errors() -> None:
    from loa.core.zones import Zone

    with pytest.raises(ZoneError, match="unknown parent"):
        ZoneTree([Zone("a", "A", "ghost")])
    with pytest.raises(ZoneError, match="twice"):
        ZoneTree([Zone("a", "A"), Zone("a", "A")])
    with pytest.raises(ZoneError, match="own ancestor"):
        ZoneTree([Zone("r", "R"), Zone("a", "A", "b"), Zone("b", "B", "a")])
