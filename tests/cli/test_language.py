"""Vietnamese first, English when the environment (or an HTTP caller) asks for it: how the
language is chosen, and the command line speaking it, argparse's own words included."""

from __future__ import annotations

from pathlib import Path

import pytest

from loa.core.i18n import language_from_env, language_from_header, translate
from tests.cli.shell import environment, loa


@pytest.mark.parametrize(("env", "language"), [
    ({}, "vi"),
    ({"LANG": "C.UTF-8"}, "vi"),  # no language asked for: Vietnamese
    ({"LANG": "fr_FR.UTF-8"}, "vi"),  # one Loa does not speak: Vietnamese
    ({"LANG": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "en_US.UTF-8"}, "en"),
    ({"LANG": "en_GB"}, "en"),
    ({"LANG": "vi_VN.UTF-8", "LC_ALL": "en_US.UTF-8"}, "en"),  # LC_ALL before LANG
    ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "vi_VN.UTF-8"}, "vi"),
    ({"LANG": "vi_VN.UTF-8", "LANGUAGE": "fr:en"}, "en"),  # LANGUAGE first, in its order
    ({"LANGUAGE": "", "LC_ALL": "C", "LANG": "en_US.UTF-8"}, "en"),  # C asks for nothing
])
def test_the_language_of_the_environment(env: dict[str, str], language: str) -> None:
    assert language_from_env(env) == language


@pytest.mark.parametrize(("header", "language"), [
    (None, "vi"), ("", "vi"), ("*", "vi"), ("fr-FR", "vi"), ("en-US", "en"), ("vi", "vi"),
    ("fr;q=1, en;q=0.8, vi;q=0.5", "en"), ("en;q=0.5, vi;q=0.9", "vi"), ("en;q=0, fr", "vi"),
    ("en-GB, vi", "en"), ("vi-VN, en;q=0.9", "vi"), ("en;q=bad, vi;q=0.1", "vi"),
])
def test_the_language_an_http_caller_prefers(header: str | None, language: str) -> None:
    assert language_from_header(header) == language


def test_a_message_in_each_language_with_its_fields_filled() -> None:
    assert translate("vi", "file not found: {path}", path="/x") == "không tìm thấy tệp /x"
    assert translate("en", "file not found: {path}", path="/x") == "file not found: /x"
    assert translate("vi", "a message no catalogue has") == "a message no catalogue has"


async def test_messages_and_usage_errors_in_the_language_lang_asks_for(tmp_path: Path) -> None:
    missing = tmp_path / "khong-co.mp3"
    vi = await loa("media", "add", "khong-co.mp3", env=environment(), cwd=tmp_path)
    assert (vi.code, vi.err) == (2, f"loa media: không tìm thấy tệp {missing}\n")
    for asks in ({"LANG": "en_US.UTF-8"}, {"LC_ALL": "en_GB.UTF-8", "LANG": "vi_VN.UTF-8"},
                 {"LANGUAGE": "en"}):
        en = await loa("media", "add", "khong-co.mp3", env=environment(**asks), cwd=tmp_path)
        assert (en.code, en.err) == (2, f"loa media: file not found: {missing}\n"), asks

    usage = await loa("live", env=environment())
    assert usage.code == 2
    assert usage.err.startswith("cách dùng: loa live")
    assert usage.err.endswith("loa live: lỗi: thiếu các đối số bắt buộc: ZONE\n")
    usage = await loa("live", env=environment(LANG="en_US.UTF-8"))
    assert usage.err.startswith("usage: loa live")
    assert usage.err.endswith("loa live: error: the following arguments are required: ZONE\n")

    helped = await loa("live", "--help", env=environment())
    assert helped.code == 0 and "cho các vùng phát trực tiếp từ một điểm phát" in helped.out
    assert "tuỳ chọn:" in helped.out and "hiện trợ giúp này rồi thoát" in helped.out
    helped = await loa("live", "--help", env=environment(LANG="en_US.UTF-8"))
    assert "put zones on air for a live mount" in helped.out and "options:" in helped.out
