"""A station with its own CA or a self-signed certificate: the client commands verify its
``https://`` server by the PEM file of ``--cacert`` (or ``LOA_CACERT``). Without it the real
``loa`` command refuses the certificate and says how to give one; with it the command works; a
CA file that cannot be used is a usage error (exit 2) that says why, in the user's language.
The certificate is made by the ``openssl`` CLI (``tests.server.test_tls``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from loa.app import LoaServer
from loa.config import TlsConfig
from tests.cli.shell import environment, loa
from tests.conftest import ADMIN_TOKEN
from tests.server.test_tls import cert, run  # noqa: F401  # the fixture, made by openssl

MakeServer = Callable[..., Awaitable[LoaServer]]

HINT_EN = ("The server's certificate is not signed by a CA this machine trusts: for a station "
           "with its own CA, or a self-signed certificate, give that file with --cacert FILE "
           "(or LOA_CACERT).")


async def test_a_self_signed_server_is_verified_by_the_cacert_file(
        make_server: MakeServer, tmp_path: Path,
        cert: tuple[Path, Path],  # noqa: F811  # the fixture, imported from test_tls
) -> None:
    crt, key = cert
    server = await make_server(tls=TlsConfig(str(crt), str(key)))
    url = f"https://127.0.0.1:{server.port}"
    env = environment(LOA_URL=url, LOA_TOKEN=ADMIN_TOKEN)

    # without the file: the certificate error there was, and how to give one
    refused = await loa("zones", env=env, cwd=tmp_path)
    assert refused.code == 1 and refused.out == ""
    assert refused.err.startswith(f"loa zones: không kết nối được tới máy chủ Loa ở {url} "
                                  "(lấy từ LOA_URL): kết nối bảo mật (TLS) thất bại."), \
        refused.err
    english = await loa("zones", env={**env, "LANGUAGE": "en"}, cwd=tmp_path)
    assert english.code == 1
    assert english.err.startswith(f"loa zones: cannot reach the Loa server at {url} (from "
                                  "LOA_URL): the secure connection (TLS) failed ("), english.err
    assert english.err.endswith(f"\n{HINT_EN}\n"), english.err
    # something answered: whether it runs is not the question (a new user was told to start it)
    assert "./run serve" not in refused.err + english.err

    # a CA file that did not sign it: said so, with the file
    other = tmp_path / "other"
    await asyncio.to_thread(other.mkdir)
    code, _, err = await run(
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(other / "key.pem"), "-out", str(other / "ca.pem"), "-days", "2",
        "-subj", "/CN=another")
    assert code == 0, err.decode()
    wrong = await loa("zones", "--cacert", str(other / "ca.pem"), env={**env, "LANGUAGE": "en"},
                      cwd=tmp_path)
    assert wrong.code == 1 and "./run serve" not in wrong.err
    assert wrong.err.endswith(f"\nThe server's certificate is not signed by the CA in "
                              f"{other / 'ca.pem'} (--cacert): give the file of the CA that "
                              "signed it.\n"), wrong.err

    # with it, after the subcommand, before it, or from the environment: the zones
    for args, extra in ((["zones", "--cacert", str(crt)], {}),
                        (["--cacert", "cert.pem", "--json", "zones"], {}),
                        (["zones"], {"LOA_CACERT": str(crt)})):
        ran = await loa(*args, env={**env, **extra}, cwd=crt.parent)
        assert ran.code == 0, ran.err
        assert "huyen" in ran.out and ran.err == "", ran
    # --cacert before LOA_CACERT
    ran = await loa("zones", "--cacert", str(crt), env={**env, "LOA_CACERT": "/khong-co.pem"},
                    cwd=tmp_path)
    assert ran.code == 0, ran.err


async def test_a_cacert_file_that_cannot_be_used_says_why(tmp_path: Path) -> None:
    # no server is asked (nothing listens on the port): the file is looked at first
    env = environment(LOA_URL="https://127.0.0.1:9", LOA_TOKEN=ADMIN_TOKEN)
    missing = tmp_path / "ca.pem"
    ran = await loa("zones", "--cacert", "ca.pem", env=env, cwd=tmp_path)
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == (f"loa zones: không dùng được chứng chỉ CA {missing} (--cacert): không có "
                       "tệp này. Hãy đưa tệp PEM của CA đã ký chứng chỉ của máy chủ, hoặc của "
                       "chính chứng chỉ đó khi nó tự ký.\n"), ran.err
    english = await loa("media", "list", env={**env, "LANGUAGE": "en", "LOA_CACERT": "ca.pem"},
                        cwd=tmp_path)
    assert (english.code, english.out) == (2, "")
    assert english.err == (f"loa media: cannot use the CA certificate {missing} (LOA_CACERT): "
                           "there is no such file. Give the PEM file of the CA that signed the "
                           "server's certificate, or of the certificate itself when it is "
                           "self-signed.\n"), english.err

    await asyncio.to_thread(missing.write_text, "không phải chứng chỉ\n")
    not_pem = await loa("zones", "--cacert", str(missing), env={**env, "LANGUAGE": "en"},
                        cwd=tmp_path)
    assert not_pem.code == 2
    assert f"{missing} (--cacert): there is no certificate in PEM form in it." in not_pem.err
    folder = await loa("zones", "--cacert", ".", env={**env, "LANGUAGE": "en"}, cwd=tmp_path)
    assert folder.code == 2 and f"{tmp_path} (--cacert): it is not a file." in folder.err
