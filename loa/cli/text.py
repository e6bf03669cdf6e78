"""The language of one ``loa`` process: chosen once from the environment at start
(``loa.core.i18n.language_from_env``: Vietnamese unless ``LANGUAGE``/``LC_ALL``/``LANG`` ask
for English), then every message of the command line goes through ``_``.

argparse says its own words (``usage:``, ``options``, its error messages) through the gettext
functions it imported at its import; ``use`` points those at Loa's catalogue too, so a usage
error reads in the same language as the rest. Their msgids are listed here (``ARGPARSE``) for
extraction into Loa's catalogue.
"""

from __future__ import annotations

import argparse

from loa.core.i18n import DEFAULT_LANGUAGE, N_, catalogue, translate, translate_plural

_language = DEFAULT_LANGUAGE

# argparse's own messages (Python 3.11-3.13) that a person meets; the rest are programming errors.
ARGPARSE = (
    N_("usage: "), N_("positional arguments"), N_("options"), N_("optional arguments"),
    N_("show this help message and exit"), N_("show program's version number and exit"),
    N_("%(prog)s: error: %(message)s\n"), N_("argument %(argument_name)s: %(message)s"),
    N_("the following arguments are required: %s"), N_("unrecognized arguments: %s"),
    N_("invalid choice: %(value)r (choose from %(choices)s)"),
    N_("invalid %(type)s value: %(value)r"), N_("expected one argument"),
    N_("expected at most one argument"), N_("expected at least one argument"),
    N_("not allowed with argument %s"), N_("one of the arguments %s is required"),
    N_("ambiguous option: %(option)s could match %(matches)s"),
    N_("ignored explicit argument %r"), N_("unknown parser %(parser_name)r (choices: %(choices)s)"),
)


def use(language: str) -> None:
    """Speak ``language`` ("vi" or "en") from now on, argparse's words included."""
    global _language
    _language = language
    words = catalogue(language)
    # argparse imported gettext's functions as module globals at its own import: rebinding
    # them is the one way to give its messages a language chosen by Loa, not by the C locale.
    argparse._ = words.gettext  # type: ignore[attr-defined]  # argparse's private alias
    argparse.ngettext = words.ngettext  # type: ignore[attr-defined]  # likewise


def language() -> str:
    """The language this process speaks ("vi" or "en")."""
    return _language


def _(message: str, /, **fields: object) -> str:
    """``message`` (English, a msgid of Loa's catalogue) in this process's language, with its
    ``{name}`` placeholders filled from ``fields``."""
    return translate(_language, message, **fields)


def ngettext(singular: str, plural: str, n: int, /, **fields: object) -> str:
    """The form for the count ``n`` (``{n}`` is filled, with ``fields``)."""
    return translate_plural(_language, singular, plural, n, **fields)
