"""Text as encoders and people send it: bytes in a declared (often legacy) charset, and names
in either Unicode normal form.

Broadcast software names the charset of its metadata on Icecast's ``/admin/metadata``
(``charset=ISO-8859-1``); without one, Loa takes UTF-8. macOS writes file names decomposed
(NFD: ``a`` + U+0309 + …), keyboards type them composed (NFC), and Vietnamese, with up to two
marks on a letter, is full of both. Loa keeps text in NFC and compares names under NFC, so
the two spellings of one name are one name.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Mapping

from loa.core.i18n import N_, Explained

DEFAULT_CHARSET = "UTF-8"
# C0/C1 control characters and Unicode's line separators: what makes one line of text two
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


class TextError(Explained, ValueError):
    """Bytes that are not text in the charset they claim, or a charset that is unknown; the
    message says which, in words an encoder's operator can act on."""


def nfc(text: str) -> str:
    """``text`` in Unicode normal form C (composed, as keyboards type it)."""
    return unicodedata.normalize("NFC", text)


def decode_text(raw: bytes, charset: str = "") -> str:
    """Decode ``raw`` strictly in ``charset`` (any name Python knows: ``ISO-8859-1``,
    ``latin1``, ``windows-1258``, ``utf8``…; UTF-8 when empty) and return it in NFC.

    Raises TextError for an unknown charset (or one that is not a text encoding, such as
    ``base64``) and for bytes that are not valid in it: nothing is decoded with replacement
    characters, so no mojibake is stored."""
    name = charset.strip() or DEFAULT_CHARSET
    try:
        text = raw.decode(name)
    except LookupError:
        raise TextError(N_("unknown charset {charset!r}: use a name such as UTF-8, ISO-8859-1 "
                           "or windows-1258"), charset=name) from None
    except UnicodeDecodeError as exc:
        bad = raw[exc.start:exc.end]
        shown = " ".join(f"0x{b:02X}" for b in bad)
        if charset.strip():
            message = (N_("not valid {charset}: bytes {bytes} at offset {offset}") if len(bad) > 1
                       else N_("not valid {charset}: byte {bytes} at offset {offset}"))
        else:  # none named: the sender should name it
            message = (N_("not valid {charset}: bytes {bytes} at offset {offset} (name its "
                          "charset, e.g. charset=ISO-8859-1)") if len(bad) > 1
                       else N_("not valid {charset}: byte {bytes} at offset {offset} (name its "
                               "charset, e.g. charset=ISO-8859-1)"))
        raise TextError(message, charset=name, bytes=shown, offset=exc.start) from None
    except UnicodeError as exc:  # a codec that refuses every input ("undefined")
        raise TextError(N_("charset {charset!r} cannot decode text: {error}"),
                        charset=name, error=str(exc)) from None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates, from an escape codec: not storable text
        raise TextError(N_("charset {charset!r} gave text that is not Unicode"),
                        charset=name) from None
    return nfc(text)


def one_line(text: str) -> str:
    """``text`` as one line: control characters (CR, LF, ESC…) become spaces, runs of
    whitespace one space."""
    return " ".join(CONTROLS.sub(" ", text).split())


def slug(text: str) -> str:
    """``text`` as an id would spell it: lower case, no accents (đ as d), words joined by
    hyphens (``Xã Phú Mỹ`` → ``xa-phu-my``)."""
    text = text.replace("đ", "d").replace("Đ", "D")
    bare = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return "-".join(bare.lower().replace("_", " ").replace("-", " ").split())


def nearest_ids(name: str, names: Mapping[str, str | None], n: int = 3) -> list[str]:
    """Up to ``n`` ids of ``names`` (id → its name for people, or None) close to ``name``,
    closest first: difflib's ratio (at least 0.6) over the ids, and over the names spelt as
    ids (``slug``), each also without its first word (``Xã An Bình`` is found from
    ``an-binh``: xã, thôn, tổ…). For "did you mean" hints; costs a ratio per id."""
    by_slug: dict[str, str] = {}
    for item_id, item_name in names.items():
        by_slug.setdefault(slug(item_id), item_id)
        if item_name:
            spelt = slug(item_name)
            by_slug.setdefault(spelt, item_id)
            words = spelt.split("-", 1)
            if len(words) == 2:
                by_slug.setdefault(words[1], item_id)
    found: list[str] = []
    for match in difflib.get_close_matches(slug(name), list(by_slug), n=n * 3, cutoff=0.6):
        item_id = by_slug[match]
        if item_id not in found:
            found.append(item_id)
    return found[:n]
