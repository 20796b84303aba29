"""Turn the LaTeX residue in titles and abstracts into plain Unicode text.

Daily Papers pages are scraped from arXiv abstracts whose inline math lost its backslashes and
dollar signs only in part: "6times larger", "MoE$^2$", "S^{2}FT", "Intel^circledR",
"\\textless2MB". Left as is, this shows through in answers and splits one paper into two when
its title is written two ways ("MoE$^2$: …" and "MoE^2: …"). `normalize_latex` rewrites only
these patterns, so ordinary text ("three times faster", "sometimes", "$5", "W_Q", URLs) stays
as it is. Change the rules → bump `NORMALIZER_VERSION` (it is part of the index's chunking id,
so indexes built with the old rules are re-built).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

#: Part of `indexing.chunking.chunking_id`: a new version makes existing indexes re-build.
NORMALIZER_VERSION = "latex-v1"

_SUPERSCRIPT = dict(zip(
    "0123456789+-=()abcdefghijklmnoprstuvwxyzABDEGHIJKLMNOPRTUVW",
    "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᴬᴮᴰᴱᴳᴴᴵᴶᴷᴸᴹᴺᴼᴾᴿᵀᵁⱽᵂ",
))
_ACCENT = {"'": "\u0301", '"': "\u0308", "`": "\u0300", "~": "\u0303"}
_SIZES = r"(?:tiny|scriptsize|footnotesize|small|normalsize|large|Large|LARGE|huge|Huge)"
_URL = re.compile(r"https?://[^\s{}<>\"']+")


def _exponent(m: re.Match[str]) -> str:
    """A signed number or one letter as superscript characters; anything longer as ^(…)."""
    exp = m[1]
    if re.fullmatch(r"[+-]?(?:\d+|[A-Za-z])", exp) and all(c in _SUPERSCRIPT for c in exp):
        return "".join(_SUPERSCRIPT[c] for c in exp)
    return f"^({exp})"


def _accented(m: re.Match[str]) -> str:
    return unicodedata.normalize("NFC", m[2] + _ACCENT[m[1]])


Replacement = str | Callable[[re.Match[str]], str]
# (pattern, replacement), applied in this order; each rule says what it undoes.
_RULE_TABLE: list[tuple[str, Replacement]] = [
    # $…$ inline math holding a LaTeX sign (\ ^ _ { }): drop the dollars. "$5" and "$5-$10" hold none.
    # (Possessive *+ keeps it linear: each "$" scans at most to the next one.)
    (r"\$(?=[^$\\^_{}]*+[\\^_{}])(?!\s)([^$]*+)(?<!\s)\$", r"\1"),
    # \url{ address } → the address
    (r"\\url\{\s*([^{}\s]+)\s*\}", r"\1"),
    # {\small …} size group → its content
    (r"\{\\" + _SIZES + r"\s([^{}]*)\}", r"\1"),
    # {\bf X}, {bf X} old-style font group (backslash often lost) → X
    (r"\{\\?(?:bf|it|rm|tt|sf|sc|em)\s([^{}]*)\}", r"\1"),
    # \scriptsize, \small … left bare → nothing
    (r"\\" + _SIZES + r"(?![A-Za-z])\s*", ""),
    # \textbf{X}, \mathtt{X}, \emph{X} … → X
    (r"\\(?:text(?:bf|it|tt|rm|sf|sc|up|normal)?|math(?:bf|it|tt|rm|sf|cal|bb)?|emph)\{([^{}]*)\}", r"\1"),
    # \textless, \textgreater → < >  ("\textless2MB" has no word break after the command)
    (r"\\textless(?![A-Za-z])\s?", "<"),
    (r"\\textgreater(?![A-Za-z])\s?", ">"),
    # word~(FFN), models~(LLMs): the non-breaking space "~" between words → a space ("~9%" is kept)
    (r"(?<=[A-Za-z])~(?=[A-Za-z(])", " "),
    # \% \& \# \_ → the character itself
    (r"\\([%&#_])", r"\1"),
    # M\'elange, na\"ive, \'{e} → Mélange, naïve, é
    (r"\\(['\"`~])\{?([A-Za-z])\}?", _accented),
    # \times, and "times" glued to a number (6times, 1152times1152, 2.4-2.9times, times100) → ×
    (r"\\times(?![A-Za-z])", "×"),
    (r"(?<=\d)times(?![A-Za-z])", "×"),
    (r"(?<![A-Za-z])times(?=\d)", "×"),
    # ^circledR → ®, ^{tiny TM} → ™, ^top → ᵀ (transpose), ^star / ^{*} → *
    (r"\^\{?\\?circledR\}?", "®"),
    (r"\^\{\\?tiny\s*TM\}|\^\{?TM\}?(?![A-Za-z])", "™"),
    (r"\^\{?\\?top\}?(?![A-Za-z])", "ᵀ"),
    (r"\^(?:\{\\?(?:star|ast|\*)\}|\\?(?:star|ast)(?![A-Za-z]))", "*"),
    # ^{…} → superscript characters (^{2} → ², ^{-1} → ⁻¹) or ^(…) when there are none (^{1/3})
    (r"\^\{([^{}]+)\}", _exponent),
    # bare ^2, ^-1, ^n → ², ⁻¹, ⁿ (not ^2.5: a decimal has no superscript form here)
    (r"\^([+-]?\d+)(?![.,]?\d)", _exponent),
    (r"\^([A-Za-z])(?![A-Za-z])", lambda m: _SUPERSCRIPT.get(m[1], m[0])),
    # _{LM} → _LM (like the unbraced W_Q, CO_2 the pages already use); _{i,j} → _(i,j)
    (r"_\{([A-Za-z0-9]+)\}", r"_\1"),
    (r"_\{([^{}]+)\}", r"_(\1)"),
]
_RULES = [(re.compile(pattern), replacement) for pattern, replacement in _RULE_TABLE]


def normalize_latex(text: str) -> str:
    """`text` with LaTeX residue rewritten as Unicode (URLs untouched), on one line."""
    urls: list[str] = []
    text = text.replace("\x00", " ")  # the placeholder below

    def hide(m: re.Match[str]) -> str:
        urls.append(m[0])
        return f"\x00{len(urls) - 1}\x00"

    out = _URL.sub(hide, text)
    for pattern, replacement in _RULES:
        out = pattern.sub(replacement, out)
    out = re.sub(r"\x00(\d+)\x00", lambda m: urls[int(m[1])], out)
    return " ".join(out.split())
