"""What the commands that talk to a running server share: finding the server and the token,
the options every such command takes, one API session, and how answers and refusals are shown.

The server is found without flags: ``--url``, else ``LOA_URL``, else the URL the running server
of this folder's data folder wrote in its lock file (``loa.cli.local_server``), else
``http://127.0.0.1:8080``. The token: ``--token``, else ``LOA_TOKEN``. ``--url``, ``--token``
and ``--json`` are taken before the subcommand (``loa --json media list``) and after it
(``loa media list --json``, ``loa media --json list``). An ``https://`` server is verified
against the system's certificate authorities, or, for a station with its own CA or a
self-signed certificate, against the PEM file of ``--cacert``, else ``LOA_CACERT`` (only that
file, as curl's ``--cacert``).

By default answers are shown to people (tables, local times, names beside ids, in the
process's language); ``--json`` prints the API's JSON exactly as it came, for scripts. A
refusal prints the server's error: with ``--json`` its JSON on stdout, else a sentence on
stderr; when the command named zones and one of them does not exist, the nearest valid zones
are suggested on stderr. Exit status: 0 done; 1 refused by the server or not reachable; 2 a
usage error (no token, a local file missing, a CA file that cannot be used, a bad value).

aiohttp is imported only when a call is made, so that ``loa --help`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from loa.cli import local_server
from loa.cli.text import _, language
from loa.core.i18n import N_
from loa.core.text import nearest_ids

if TYPE_CHECKING:
    import ssl

    import aiohttp

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_URL = "http://127.0.0.1:8080"
CACERT_HELP = N_("the certificate (PEM) of the CA that signed an https:// server's, or the "
                 "server's own when self-signed, to verify it by (default: LOA_CACERT)")


class CliExit(Exception):
    """End the command with exit ``status``, printing ``message`` (if any) on stderr as
    ``loa <command>: message``. Raised anywhere below ``run``; ``loa.cli.commands`` catches
    it."""

    def __init__(self, status: int, message: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def client_options(token_help: str) -> argparse.ArgumentParser:
    """A parent parser with ``--url``, ``--token``, ``--cacert`` and ``--json``, for every
    level of a client command (its defaults are left out, so a level that does not see an
    option does not overwrite what another level saw)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=_("the server (default: LOA_URL, else the server of this folder, "
                               "else {url})", url=DEFAULT_URL))
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help=_("{who} (default: LOA_TOKEN)", who=token_help))
    common.add_argument("--cacert", metavar="FILE", default=argparse.SUPPRESS,
                        help=_(CACERT_HELP))
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help=_("print the API's JSON as it came, for scripts"))
    return common


def add_client_parser(sub: SubParsers, name: str, help_text: str,
                      token_help: str) -> argparse.ArgumentParser:
    """Add the command ``name`` to ``sub`` with the client options (``client_options``;
    ``token_help`` says which right the token needs); returns its parser."""
    parser: argparse.ArgumentParser = sub.add_parser(
        name, help=help_text, description=help_text, parents=[client_options(token_help)])
    return parser


def add_client_subparser(sub: SubParsers, name: str, help_text: str,
                         parent: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """A subcommand of a client command (``endpoints list``) that takes the client options
    after its name too (``parent`` is what ``client_options`` made)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text,
                                                     parents=[parent])
    return parser


def add_list_options(parser: argparse.ArgumentParser) -> None:
    """``--limit`` and ``--offset``, for the tables of a list (not ``--json``: it is the API's
    whole answer)."""
    parser.add_argument("--limit", type=count, default=None,
                        help=_("rows to show (default 100; 0 for all)"))
    parser.add_argument("--offset", type=count, default=0, help=_("rows to skip"))


def count(value: str) -> int:
    """An argparse type: a whole number from 0 up (``--limit``, ``--offset``). Raises
    ``argparse.ArgumentTypeError`` saying so for another value (-1, 2.5, "x")."""
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(_("{value!r} is not a count: give a whole number "
                                           "from 0 up (0: all)", value=value))
    return number


def wants_json(args: argparse.Namespace) -> bool:
    """Whether ``--json`` was given, before or after the subcommand."""
    return bool(getattr(args, "json", False))


def local_file(path: str) -> Path:
    """``path`` from the user's working directory, as an absolute path. Raises ``CliExit``
    (2, "file not found") when there is no such file."""
    found = Path(os.path.abspath(Path(path).expanduser()))  # "../x.mp3" named as /home/x.mp3
    if not found.is_file():
        raise CliExit(2, _("file not found: {path}", path=str(found)) if not found.exists()
                      else _("not a file: {path}", path=str(found)))
    return found


@dataclass(frozen=True)
class Target:
    """The server a command talks to: ``url`` (no trailing slash), where it came from
    (``source``: "--url", "LOA_URL", the lock file's path, or "default"), the ``token``
    (None when none was given), and the CA file to verify an https:// server by, absolute
    (``cacert``, None for the system's authorities), with where it came from
    (``cacert_source``: "--cacert" or "LOA_CACERT")."""

    url: str
    source: str
    token: str | None
    cacert: Path | None = None
    cacert_source: str = ""


def find_target(args: argparse.Namespace, environ: dict[str, str] | None = None) -> Target:
    """The server and token for ``args`` (see the module's docstring for the order)."""
    env = dict(os.environ if environ is None else environ)
    token = getattr(args, "token", None) or env.get("LOA_TOKEN") or None
    tls: dict[str, Any] = {}
    for cacert, cacert_source in ((getattr(args, "cacert", None), "--cacert"),
                                  (env.get("LOA_CACERT"), "LOA_CACERT")):
        if cacert:
            tls = {"cacert": Path(os.path.abspath(Path(cacert).expanduser())),
                   "cacert_source": cacert_source}
            break
    if getattr(args, "url", None):
        return Target(args.url.rstrip("/"), "--url", token, **tls)
    if env.get("LOA_URL"):
        return Target(env["LOA_URL"].rstrip("/"), "LOA_URL", token, **tls)
    data_dir = local_server.data_dir_from_env(env)
    found = local_server.find(data_dir)
    if found:
        return Target(found.rstrip("/"), str(local_server.lock_path(data_dir)), token, **tls)
    return Target(DEFAULT_URL, "default", token, **tls)


# why a --cacert file cannot be used
CACERT_UNUSABLE = {
    "missing": N_("there is no such file"),
    "not_file": N_("it is not a file"),
    "unreadable": N_("it cannot be read"),
    "not_pem": N_("there is no certificate in PEM form in it"),
}


def ca_context(cafile: Path, source: str) -> ssl.SSLContext:
    """A client TLS context that trusts the certificates of the PEM file ``cafile`` and no
    other (as curl's ``--cacert``); ``source`` names where the path came from ("--cacert" or
    "LOA_CACERT"). Blocking (reads the file): call it before the session's loop runs. Raises
    ``CliExit`` (2) saying why the file cannot be used: missing, not a file, not readable, or
    no PEM certificate in it."""
    import ssl

    if not cafile.exists():
        reason = CACERT_UNUSABLE["missing"]
    elif not cafile.is_file():
        reason = CACERT_UNUSABLE["not_file"]
    else:
        try:
            return ssl.create_default_context(cafile=str(cafile))
        except ssl.SSLError:  # an OSError too: asked first
            reason = CACERT_UNUSABLE["not_pem"]
        except OSError:
            reason = CACERT_UNUSABLE["unreadable"]
    raise CliExit(2, _("cannot use the CA certificate {path} ({source}): {reason}. Give the "
                       "PEM file of the CA that signed the server's certificate, or of the "
                       "certificate itself when it is self-signed.", path=str(cafile),
                       source=source, reason=_(reason)))


@dataclass(frozen=True)
class Answer:
    """One API answer: HTTP ``status``, ``text`` as it came, and ``data`` (the JSON, when
    the answer is JSON; else None)."""

    status: int
    text: str
    data: Any

    @property
    def ok(self) -> bool:
        """Below 400."""
        return self.status < 400

    @property
    def error(self) -> str:
        """The server's error message (``{"error": …}``), or the text it sent."""
        message = self.data.get("error") if isinstance(self.data, dict) else None
        if isinstance(message, str):
            return message
        return self.text.strip() or f"HTTP {self.status}"


class ApiClient:
    """One session with a server for one command, used from plain (non-async) code: each
    ``call`` runs on the session's own event loop. A context manager: ``with
    ApiClient(args) as api: answer = api.call("GET", "/api/v1/zones")``.

    Raises ``CliExit`` (2) on entry without a token, and from ``call`` (1) when the server
    cannot be reached, saying where the URL came from and what to do.
    """

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.command = getattr(args, "command", "")
        self.target = find_target(args)
        self.as_json = wants_json(args)
        self._zones: dict[str, dict[str, Any]] | None = None
        self._runner: asyncio.Runner | None = None
        self._http: aiohttp.ClientSession | None = None

    def __enter__(self) -> ApiClient:
        if not server_address(self.target.url):
            raise CliExit(2, self._not_an_address())
        if not self.target.token:
            raise CliExit(2, _("needs a token: set LOA_TOKEN=<token> (the admin token is "
                               "printed once, at the first start of loa serve), or give "
                               "--token <token>"))
        tls = (None if self.target.cacert is None
               else ca_context(self.target.cacert, self.target.cacert_source))
        import aiohttp

        async def open_session() -> aiohttp.ClientSession:
            # the connector, with the CA file's context or the default one, binds to this loop
            connector = aiohttp.TCPConnector(ssl=True if tls is None else tls)
            return aiohttp.ClientSession(connector=connector, headers={
                "Authorization": f"Bearer {self.target.token}",
                "Accept-Language": language()})

        self._runner = asyncio.Runner()
        self._http = self._runner.run(open_session())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._runner is not None:
            if self._http is not None:
                self._runner.run(self._http.close())
            self._runner.close()

    def call(self, method: str, path: str, body: object = None, *, raw: bytes | None = None,
             files: dict[str, Path] | None = None, fields: dict[str, str] | None = None,
             accept: str | None = None) -> Answer:
        """One request: ``raw`` bytes as the body, or ``files`` (form field → local file)
        with ``fields`` as multipart, or ``body`` as JSON (None: no body). ``accept`` sets the
        Accept header. Returns the answer, whatever its status."""
        import aiohttp

        assert self._runner is not None and self._http is not None, "use ApiClient in a with"
        http = self._http
        url = self.target.url + path
        headers = {"Accept": accept} if accept else {}

        async def go() -> Answer:
            handles = []
            try:
                if raw is not None:
                    data: Any = raw
                elif files:
                    form = aiohttp.FormData()
                    for name, value in (fields or {}).items():
                        form.add_field(name, value)
                    for name, file_path in files.items():
                        handle = await asyncio.to_thread(open, file_path, "rb")
                        handles.append(handle)
                        form.add_field(name, handle, filename=file_path.name)
                    data = form
                else:
                    data = None
                kwargs: dict[str, Any] = {"data": data} if data is not None else (
                    {"json": body} if body is not None else {})
                async with http.request(method, url, headers=headers, **kwargs) as resp:
                    text = await resp.text(encoding="utf-8")
                    parsed = None
                    if resp.content_type == "application/json":
                        try:
                            parsed = json.loads(text)
                        except ValueError:
                            parsed = None
                    return Answer(resp.status, text, parsed)
            finally:
                for handle in handles:
                    handle.close()

        try:
            return self._runner.run(go())
        except aiohttp.InvalidURL:
            raise CliExit(2, self._not_an_address()) from None
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise CliExit(1, self._unreachable(exc)) from None
        except aiohttp.ClientError as exc:
            raise CliExit(1, _("talking to the server at {url} failed: {error}",
                               url=self.target.url, error=str(exc) or type(exc).__name__)
                          ) from None

    def _not_an_address(self) -> str:
        return _("{url} is not a server address: give one such as http://127.0.0.1:8080 "
                 "(--url or LOA_URL)", url=self.target.url)

    def _unreachable(self, exc: BaseException) -> str:
        source = self.target.source
        where = {"--url": _("given with --url"), "LOA_URL": _("from LOA_URL"),
                 "default": _("the default")}.get(source) or _("written by loa serve in {path}",
                                                                path=source)
        raw = str(exc) or type(exc).__name__
        known = why_unreachable(exc)
        # the operating system's and aiohttp's words are English: behind ours, in English only
        reason = raw if known is None else (_(known) if language() != "en"
                                            else f"{_(known)} ({raw})")
        said = _("cannot reach the Loa server at {url} ({where}): {reason}.", url=self.target.url,
                 where=where, reason=reason)
        if known != UNREACHABLE["tls"]:
            return said + "\n" + _("Is it running? Start it with ./run serve, or name another "
                                   "server with LOA_URL=http://host:port or --url.")
        # something answered: not whether it runs, but whether its certificate is trusted
        if not untrusted_issuer(exc):
            return said
        if self.target.cacert is None:
            return said + "\n" + _("The server's certificate is not signed by a CA this "
                                   "machine trusts: for a station with its own CA, or a "
                                   "self-signed certificate, give that file with --cacert "
                                   "FILE (or LOA_CACERT).")
        return said + "\n" + _("The server's certificate is not signed by the CA in {path} "
                               "({source}): give the file of the CA that signed it.",
                               path=self.target.cacert, source=self.target.cacert_source)

    # answers

    def check(self, answer: Answer, zones: Iterable[str] = ()) -> Any:
        """``answer.data`` if the server did what was asked; else show the refusal (the API's
        JSON on stdout with ``--json``, a sentence on stderr otherwise; suggestions for any of
        ``zones`` that does not exist, unless the refusal is a 403, which says what it is) and
        raise ``CliExit(1)``."""
        if answer.ok:
            return answer.data
        if self.as_json:
            emit(answer.text)
        else:
            print(self.refusal(answer), file=sys.stderr)
        # a 403 already says what it is (the scope, or a right): the zones are not looked up
        # again, which would only say the same refusal twice
        if answer.status != 403:
            for hint in self.zone_hints(zones):
                print(hint, file=sys.stderr)
        raise CliExit(1)

    def refusal(self, answer: Answer, prefix: bool = True) -> str:
        """A refusal as a sentence for people, with what to do for the statuses that have a
        usual cause; ``loa <command>: `` first unless ``prefix`` is False (for a message
        that ``CliExit`` prints, which adds it)."""
        line = _("the server refused ({status}): {error}", status=answer.status,
                 error=answer.error)
        if prefix:
            line = f"loa {self.command}: {line}"
        if answer.status == 401:
            line += "\n" + _("The token was not accepted: set LOA_TOKEN to a token of this "
                             "server (the admin token is printed once, at its first start).")
        elif answer.status == 403:
            line += "\n" + self._forbidden_hint(answer)
        return line

    @staticmethod
    def _forbidden_hint(answer: Answer) -> str:
        """What to do about a 403, by the kind of refusal the API names (``refused``)."""
        data = answer.data if isinstance(answer.data, dict) else {}
        if data.get("refused") == "scope":
            return _("Your account acts only on the zones under {scope}: an administrator "
                     "whose scope covers this zone can do it, or widen your scope.",
                     scope=data.get("scope") or "?")
        if data.get("refused") == "right":
            right = str(data.get("right") or "?")
            return _("Your role lacks the {right} right: ask an administrator to give it to "
                     "you, or use a token that has it.",
                     right=_(RIGHT_WORDS[right]) if right in RIGHT_WORDS else right)
        return _("This token lacks the right for it: use a token that has it.")

    def show(self, answer: Answer, human: str, zones: Iterable[str] = ()) -> int:
        """Print the answer: the API's JSON with ``--json``, else ``human`` (a table or
        sentences). Refusals as ``check`` shows them. Returns the exit status 0."""
        self.check(answer, zones)
        emit(answer.text if self.as_json else human)
        return 0

    # zones: names beside ids, and suggestions for a zone that does not exist

    def zones(self) -> dict[str, dict[str, Any]]:
        """The server's zones by id (one API call per command, then kept)."""
        if self._zones is None:
            answer = self.call("GET", "/api/v1/zones")
            listed = answer.data.get("zones") if answer.ok and isinstance(answer.data,
                                                                          dict) else None
            self._zones = {z["id"]: z for z in listed or [] if isinstance(z, dict)}
        return self._zones

    def zone_name(self, zone_id: str) -> str:
        """The zone's name, or "" when it has none or is unknown."""
        return str(self.zones().get(zone_id, {}).get("name") or "")

    def zone_hints(self, names: Iterable[str]) -> list[str]:
        """For each of ``names`` that is not a zone of the caller's scope: a line saying so,
        with the nearest valid zones (by id, or by name without accents); or, for a zone that
        exists outside the scope, the server's refusal (without the ``loa <command>:``
        prefix) and what to do."""
        return [hint for hint, _answer in self.zone_problems(names)]

    def check_zones(self, names: Iterable[str]) -> None:
        """Before anything is done: each of ``names`` is a zone of the caller's scope; else
        what is wrong is said (``zone_hints``: ``loa <command>: `` first; with ``--json``
        the server's refusal on stdout and the zones not found on stderr, as ``check``
        shows a refusal) and ``CliExit(1)`` is raised."""
        problems = self.zone_problems(names)
        if not problems:
            return
        if not self.as_json:
            raise CliExit(1, "\n".join(hint for hint, _answer in problems))
        refused = next((answer for _hint, answer in problems if answer is not None), None)
        if refused is not None:
            emit(refused.text)
        for hint, answer in problems:  # a 403 is said by its JSON
            if answer is None or answer.status != 403:
                print(hint, file=sys.stderr)
        raise CliExit(1)

    def zone_problems(self, names: Iterable[str]) -> list[tuple[str, Answer | None]]:
        """``zone_hints``, each with the server's answer about that zone when it refused it
        (a 403 or a 404 for ``GET zones/{zone}``: what ``--json`` prints), else None."""
        names = [n for n in names if n]
        if not names:
            return []
        known = self.zones()
        if not known:
            return []
        problems: list[tuple[str, Answer | None]] = []
        for name in names:
            if name in known:
                continue
            # the list holds only the caller's scope: a zone outside it is refused, not unknown
            answer = self.call("GET", f"/api/v1/zones/{quote(name, safe='')}")
            if answer.ok:
                continue
            if answer.status == 403:
                problems.append((self.refusal(answer, prefix=False), answer))
                continue
            refused = answer if answer.data is not None else None
            near = nearest_zones(name, known)
            if near:
                listed = ", ".join(f"{z} ({known[z].get('name')})" if known[z].get("name")
                                   else z for z in near)
                problems.append((_("There is no zone {zone!r}; the nearest: {near}.",
                                   zone=name, near=listed), refused))
            else:
                problems.append((_("There is no zone {zone!r}; see the zones with: loa zones",
                                   zone=name), refused))
        return problems


def server_address(url: str) -> bool:
    """Whether ``url`` names a server as the commands need it: ``http://`` or ``https://``
    and a host (``127.0.0.1:8080`` alone is not: it would be read as a path)."""
    split = urlsplit(url)
    return split.scheme in ("http", "https") and bool(split.hostname)


# why a server could not be reached, in words (the operating system's are English)
UNREACHABLE = {
    "refused": N_("connection refused: nothing listens on that port"),
    "name": N_("no machine has that name"),
    "timeout": N_("no answer in time"),
    "reset": N_("the connection was cut"),
    "route": N_("no route to that machine (is the network up?)"),
    "closed": N_("the server closed the connection without answering"),
    "tls": N_("the secure connection (TLS) failed"),
}


def why_unreachable(exc: BaseException) -> str | None:
    """The msgid of ``UNREACHABLE`` that says why ``exc`` (an aiohttp or OS error of a
    request) kept the server out of reach, or None when it is none of those."""
    import ssl  # imported with aiohttp, when a call was made

    import aiohttp

    cause = getattr(exc, "os_error", None) or exc
    if isinstance(exc, (aiohttp.ClientSSLError, ssl.SSLError)) or \
            isinstance(cause, ssl.SSLError):
        return UNREACHABLE["tls"]
    if isinstance(exc, TimeoutError) or isinstance(cause, TimeoutError):
        return UNREACHABLE["timeout"]
    if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(cause, socket.gaierror):
        return UNREACHABLE["name"]
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UNREACHABLE["closed"]
    code = getattr(cause, "errno", None)
    text = str(cause)
    # several addresses tried (localhost: ::1 and 127.0.0.1) give one OSError without errno
    if code == errno.ECONNREFUSED or f"[Errno {errno.ECONNREFUSED}]" in text:
        return UNREACHABLE["refused"]
    if code in (errno.ECONNRESET, errno.EPIPE) or isinstance(cause, ConnectionResetError):
        return UNREACHABLE["reset"]
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return UNREACHABLE["route"]
    return None


# OpenSSL's verify codes (x509_vfy.h) that mean "the issuer is not trusted here": 18 a
# self-signed certificate, 19 a self-signed one in the chain, 20 and 21 an issuer not found
# among the trusted ones. A name that does not match (62) is not mended by a CA file.
UNTRUSTED_ISSUER = frozenset({18, 19, 20, 21})


def untrusted_issuer(exc: BaseException) -> bool:
    """Whether ``exc`` (an aiohttp error of a request) is a certificate that failed
    verification for want of a trusted CA (``UNTRUSTED_ISSUER``): ``--cacert`` would help."""
    import ssl

    import aiohttp

    if not isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return False
    cause = exc.certificate_error
    return isinstance(cause, ssl.SSLCertVerificationError) and \
        cause.verify_code in UNTRUSTED_ISSUER


def nearest_zones(name: str, known: dict[str, dict[str, Any]], n: int = 3) -> list[str]:
    """Up to ``n`` zone ids of ``known`` (the API's zones by id) close to ``name``, closest
    first (``loa.core.text.nearest_ids``)."""
    return nearest_ids(name, {zone_id: zone.get("name") for zone_id, zone in known.items()}, n)


def emit(text: str) -> None:
    """Write ``text`` to stdout, ending it with a newline if it has none (nothing for "").

    Written as bytes until all are taken: with ``PYTHONUNBUFFERED`` stdout is unbuffered, and
    a text write that the pipe takes only part of would be cut short without an error (the
    reader gone, ``BrokenPipeError`` is raised on the next write, as ``loa.cli.main``
    expects)."""
    if not text:
        return
    text = text if text.endswith("\n") else text + "\n"
    out = getattr(sys.stdout, "buffer", None)
    if out is None:  # a stdout replaced by text-only stream
        sys.stdout.write(text)
        return
    sys.stdout.flush()  # what the text layer holds goes first
    data = memoryview(text.encode(sys.stdout.encoding or "utf-8", sys.stdout.errors or "strict"))
    while data:
        written = out.write(data)
        data = data[written or 0:]
    out.flush()


# the rights as the server's messages name them (the same msgids: ``loa.control.auth``)
RIGHT_WORDS = {"admin": N_("admin"), "operate": N_("operate"), "alert": N_("alert")}

# what the few status words of the API read as, for people
STATUS_WORDS = {
    "pending": N_("pending"), "sent": N_("sent, not acknowledged"), "acked": N_("acknowledged"),
    "failed": N_("failed"), "expired": N_("expired"), "superseded": N_("superseded"),
    "cancelled": N_("cancelled"), "active": N_("active"), "completed": N_("completed"),
}


def status_word(status: object) -> str:
    """An API status (``acked``, ``active``…) in words; unknown ones as they are."""
    word = STATUS_WORDS.get(str(status))
    return _(word) if word else str(status)
