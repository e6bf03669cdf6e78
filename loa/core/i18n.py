"""Message catalogues: what Loa says to people, in Vietnamese first, in English on request.

Messages are written in the code in English (the msgids) and translated in gettext catalogues
kept beside the package: ``loa/locale/<lang>/LC_MESSAGES/loa.po`` (edited by people; Babel
extracts and merges them, ``./run i18n``) and the ``loa.mo`` compiled from it (read here,
shipped with the package; a test keeps it in step with the ``.po``). English needs no catalogue:
the msgid is the English text.

Every function takes the language explicitly, so one process can answer each caller in theirs:
the command line picks it once from the environment (``language_from_env``: ``LANGUAGE``,
``LC_ALL``, ``LC_MESSAGES``, ``LANG``), and an HTTP handler can pick it per request from
``Accept-Language`` (``language_from_header``). Vietnamese is the default whenever neither
asks for a language Loa speaks.

Placeholders are ``{name}`` fields (``str.format``), filled after translation so a translation
may move them: ``translate("vi", "unknown zone {zone}", zone="an-bnh")``.

An error says what went wrong in whoever's language reads it: a class that derives from
``Explained`` is raised with an ``N_``-marked msgid and its fields (``raise
ZoneError(N_("unknown zone {zone!r}"), zone=zone_id)``); ``str(exc)`` is the English, and
``say(exc, language)`` the translation (the API answers in the language of
``Accept-Language``, the command line in the user's). ``say`` also translates a plain
exception whose whole text is a msgid of the catalogue, and leaves any other text as it is.

Reading a catalogue is file I/O: the first ``catalogue(lang)`` of a process reads the ``.mo``
and keeps it. A server calls ``load_catalogues()`` beside its loop at start-up, before any
handler translates.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DOMAIN = "loa"
LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
# The languages Loa speaks, the default first. English is the msgids' language.
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = LANGUAGES[0]
SOURCE_LANGUAGE = "en"
# The environment variables that name the language of messages, strongest first (as gettext
# reads them; LANGUAGE may list several, colon-separated).
LANGUAGE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def N_(message: str) -> str:  # noqa: N802  # gettext's name for "translated later"
    """Mark ``message`` for extraction without translating it now (it is translated where it
    is shown, in the language of whoever reads it)."""
    return message


def supported(tag: str) -> str | None:
    """The language of Loa that a locale name or language tag names, or None: ``vi_VN.UTF-8``,
    ``vi-VN`` and ``vi`` are ``"vi"``; ``en_GB`` is ``"en"``; ``C``, ``POSIX`` and ``fr`` are
    None."""
    base = tag.strip().split(".")[0].split("@")[0].replace("-", "_").split("_")[0].lower()
    return base if base in LANGUAGES else None


def language_from_env(environ: Mapping[str, str]) -> str:
    """The language the environment asks for (``LANGUAGE_VARIABLES`` in order, each entry of a
    colon-separated list in order): the first one Loa speaks, else ``DEFAULT_LANGUAGE``
    (``C`` or a language Loa does not speak gets Vietnamese)."""
    for name in LANGUAGE_VARIABLES:
        for entry in environ.get(name, "").split(":"):
            found = supported(entry) if entry else None
            if found:
                return found
    return DEFAULT_LANGUAGE


def language_from_header(accept_language: str | None) -> str:
    """The language an HTTP ``Accept-Language`` header prefers among Loa's (RFC 9110: quality
    values, ``*`` for any; ties keep the header's order), else ``DEFAULT_LANGUAGE``."""
    best: tuple[float, int, str] | None = None
    for order, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        language = DEFAULT_LANGUAGE if tag.strip() == "*" else supported(tag)
        if language is None or quality <= 0:
            continue
        if best is None or (quality, -order) > (best[0], -best[1]):
            best = (quality, order, language)
    return best[2] if best else DEFAULT_LANGUAGE


@functools.cache
def catalogue(language: str) -> gettext.NullTranslations:
    """The catalogue of ``language`` (read once per process: blocking file I/O the first time).
    English, and a language without a compiled catalogue, answer the msgids themselves."""
    if language == SOURCE_LANGUAGE:
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, LOCALE_DIR, languages=[language], fallback=True)


def load_catalogues() -> None:
    """Read every language's catalogue now (blocking: call it beside the event loop)."""
    for language in LANGUAGES:
        catalogue(language)


def translate(language: str, message: str, /, **fields: object) -> str:
    """``message`` (an English msgid) in ``language``, its ``{name}`` placeholders filled from
    ``fields``. Raises KeyError when a placeholder has no field."""
    text = catalogue(language).gettext(message)
    return text.format(**fields) if fields else text


def translate_plural(language: str, singular: str, plural: str, n: int, /,
                     **fields: object) -> str:
    """The form of ``singular``/``plural`` for the count ``n`` in ``language`` (Vietnamese has
    one form), placeholders filled from ``fields`` and ``{n}``."""
    text = catalogue(language).ngettext(singular, plural, n)
    return text.format(n=n, **fields)


@dataclass(frozen=True, slots=True)
class Message:
    """A message not yet in anyone's language: an English msgid (``N_``-marked where it is
    written, so ``./run i18n`` extracts it) and the values of its ``{name}`` fields. A field
    may be a Message itself (a phrase translated in its turn). ``str()`` is the English."""

    msgid: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def say(self, language: str) -> str:
        """The message in ``language``, its fields filled (KeyError: a field is missing)."""
        fields = {k: v.say(language) if isinstance(v, Message) else v
                  for k, v in self.fields.items()}
        return translate(language, self.msgid, **fields)

    def __str__(self) -> str:
        return self.say(SOURCE_LANGUAGE)


class Explained(Exception):
    """An error whose message is a ``Message``: raise it as ``Error(N_("msgid {x}"), x=…)``.
    ``str(exc)`` is the English text (logs, tests, callers that do not translate);
    ``exc.message.say(language)`` (or ``say(exc, language)``) the translation. Raised with
    a text that is no msgid (an f-string of old), the text is said as it is."""

    def __init__(self, message: str | Message = "", /, **fields: Any) -> None:
        self.message = message if isinstance(message, Message) else Message(message, fields)
        super().__init__(str(self.message))


def say(exc: BaseException, language: str) -> str:
    """What ``exc`` says, in ``language``: the ``Message`` of an ``Explained`` error (or of
    any error with a ``message`` attribute that is one, as ``DiskFull``) translated; the
    text of any other error translated when it is a msgid of the catalogue (a fixed
    message), else as it is."""
    message = getattr(exc, "message", None)  # an Explained error, or one that has its own
    if isinstance(message, Message):
        return message.say(language)
    text = str(exc)
    return catalogue(language).gettext(text) if text else text
