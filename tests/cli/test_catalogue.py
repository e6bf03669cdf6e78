"""The message catalogues stay whole: every message of the code is translated in each
language's ``.po`` (nothing missing, fuzzy or left over), each translation keeps its
placeholders, and the compiled ``.mo`` that ships says what the ``.po`` says (``./run i18n``
mends all three)."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.pofile import read_po

from loa.core.i18n import DOMAIN, LANGUAGES, LOCALE_DIR, SOURCE_LANGUAGE

ROOT = Path(__file__).resolve().parents[2]
TRANSLATED = [lang for lang in LANGUAGES if lang != SOURCE_LANGUAGE]
FIX = "run ./run i18n, translate what it reports, and run it again"


def code_messages() -> set[str]:
    """The msgids in the package's code (Python, and the console's JavaScript), as ``pybabel
    extract -F babel.cfg`` (``./run i18n``) finds them."""
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
            str(ROOT / "loa"), method_map=[("web/**.js", "javascript"), ("**.py", "python")],
            keywords=DEFAULT_KEYWORDS):
        found.add(message if isinstance(message, str) else message[0])
    return found


def placeholders(text: str) -> list[str]:
    """The ``{name}`` fields and ``%(name)s``-style conversions of a message, sorted."""
    return sorted(re.findall(r"\{[^{}]*\}|%\([^)]*\)[a-z]|%[a-z]", text))


def entries_of(language: str) -> dict[str, tuple[tuple[str, ...], tuple[str, ...], bool]]:
    """The ``.po`` of ``language`` by msgid (a plural's by its singular): (msgids, translated
    forms, fuzzy)."""
    with open(LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as f:
        po = read_po(f)
    out = {}
    for m in po:
        if not m.id:
            continue
        ids = tuple(m.id) if isinstance(m.id, (list, tuple)) else (m.id,)
        forms = tuple(m.string) if isinstance(m.string, (list, tuple)) else (m.string,)
        out[ids[0]] = (ids, forms, m.fuzzy)
    return out


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_of_the_code_is_translated_and_keeps_its_placeholders(
        language: str) -> None:
    entries = entries_of(language)
    messages = code_messages()
    assert len(messages) > 200  # the extraction found the command line's messages
    assert sorted(messages - set(entries)) == [], f"not in the catalogue: {FIX}"
    assert sorted(set(entries) - messages) == [], f"no longer in the code: {FIX}"
    assert sorted(i for i, (_ids, forms, fuzzy) in entries.items()
                  if fuzzy or not all(forms)) == [], FIX
    for msgid, (ids, forms, _fuzzy) in entries.items():
        for form in forms:
            assert placeholders(form) == placeholders(ids[-1]), msgid


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalogue_says_what_the_po_says(language: str) -> None:
    with open(LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.mo", "rb") as f:
        mo = gettext.GNUTranslations(f)
    differ = []
    for msgid, (ids, forms, _fuzzy) in entries_of(language).items():
        compiled = ((mo.gettext(msgid),) if len(ids) == 1
                    else tuple(mo.ngettext(ids[0], ids[1], n) for n in range(len(forms))))
        if compiled != forms:
            differ.append(msgid)
    assert differ == [], f"the .mo is not the .po compiled: {FIX}"
