"""Shared action-text normalisation for the Gym Cards parsers."""

from __future__ import annotations

_ALIASES = str.maketrans({"\u2212": "-", "\u2013": "-", "\u00d7": "*", "\u00f7": "/", "\uff0b": "+"})
_QUOTES = "\"'`"


def normalize(text: str) -> str:
    """Strip whitespace and matching surrounding quotes, casefold, map ``− × ÷`` to ``- * /``.

    ``normalize(' "Hit" ') == "hit"``. Never raises for a ``str``.
    """
    s = text.strip()
    while len(s) >= 2 and s[0] == s[-1] and s[0] in _QUOTES:
        s = s[1:-1].strip()
    return s.casefold().translate(_ALIASES)
