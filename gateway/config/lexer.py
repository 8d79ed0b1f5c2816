"""Splitting one configuration line into tokens.

The rules are the manual's "Naming Conventions and Character Types":

* a name that contains spaces is enclosed in double quotes; the manual prints
  them typographically, so an opening quote is ``"`` or ``“`` and a closing one
  ``"`` or ``”`` (single quotes, straight or ``‘ ’``, are ordinary characters
  inside a name: "Our subscribers’ network");
* leading and trailing spaces inside the quotes are trimmed and runs of spaces
  fold into one;
* one command per line; a line whose first non-blank character is ``#`` is a
  comment.

Lines end at LF (or CR LF) only: ``str.splitlines()`` also breaks at form
feed, vertical tab, NEL, U+2028/U+2029 and a lone CR, which turned the rest of
a comment into a command and shifted every later line number. Those
characters (and every other control character but tab) are an error inside a
command line and ignored inside a comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

OPEN_QUOTES = ('"', "\u201c")
CLOSE_QUOTES = ('"', "\u201d")
QUOTES = OPEN_QUOTES + CLOSE_QUOTES
# Characters that separate tokens: space, tab and the other Unicode blanks.
_ZERO_WIDTH = "\ufeff\u200b"
# C0 and C1 controls but tab, and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {
    "\x00": "NUL", "\x0b": "vertical tab", "\x0c": "form feed", "\r": "carriage return",
    "\x1b": "escape", "\x7f": "delete", "\x85": "next line (NEL)",
    "\u2028": "line separator", "\u2029": "paragraph separator",
}


@dataclass(frozen=True, slots=True)
class Token:
    text: str          # the value: a keyword or name, quotes removed, spaces folded
    column: int        # 1-based column of the token's first character
    raw: str           # the characters as written
    quoted: bool = False


@dataclass(frozen=True, slots=True)
class LexError:
    column: int
    token: str
    message: str
    hint: str


def split_lines(text: str) -> list[str]:
    """The lines of ``text``: split at LF, a CR right before the LF dropped."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def control_character(line: str) -> LexError | None:
    """The first control character of a command line, as an error."""
    m = _CONTROL.search(line)
    if m is None:
        return None
    ch = m.group()
    code = f"U+{ord(ch):04X}"
    name = _CONTROL_NAMES.get(ch, "control character")
    return LexError(
        m.start() + 1, code, f"a control character ({name}, {code}) inside a line",
        "remove it or replace it with a space; only LF (or CR LF) ends a line, and "
        "control characters are allowed only in comments")


def fold_spaces(text: str) -> str:
    """Trim and fold runs of blanks, as the manual does inside quotes."""
    return " ".join(text.split())


def is_comment_or_blank(line: str) -> bool:
    """True for a comment (first non-blank character ``#``) or a blank line.

    Blanks here are those the tokenizer skips, less the control characters,
    so a line holding only a form feed is an error, not a blank line."""
    for ch in line:
        if ch == "#":
            return True
        if ch in _ZERO_WIDTH or (ch.isspace() and _CONTROL.match(ch) is None):
            continue
        return False
    return True


def tokenize(line: str) -> tuple[list[Token], LexError | None]:
    """The tokens of ``line`` up to the first lexical error (if any)."""
    tokens: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if ch.isspace() or ch in _ZERO_WIDTH:
            i += 1
            continue
        start = i
        if ch in OPEN_QUOTES or ch == "\u201d":
            i += 1
            while i < n and line[i] not in CLOSE_QUOTES and line[i] != "\u201c":
                i += 1
            if i >= n:
                return tokens, LexError(
                    start + 1, line[start:].rstrip(), "unterminated quoted name",
                    "close the quotes on the same line (one command per line); if the "
                    "command continues on the next line, join the two lines")
            if line[i] == "\u201c":
                return tokens, LexError(
                    i + 1, line[start:i + 1], "an opening quote inside a quoted name",
                    "names may not contain double quotes")
            raw = line[start:i + 1]
            i += 1
            if i < n and not line[i].isspace():
                j = i
                while j < n and not line[j].isspace():
                    j += 1
                return tokens, LexError(
                    i + 1, line[start:j], "text right after a closing quote",
                    "put a space after the closing quote")
            tokens.append(Token(fold_spaces(raw[1:-1]), start + 1, raw, quoted=True))
            continue
        while i < n and not line[i].isspace() and line[i] not in QUOTES:
            i += 1
        if i < n and line[i] in QUOTES:
            j = i
            while j < n and not line[j].isspace():
                j += 1
            return tokens, LexError(
                i + 1, line[start:j], "a double quote inside a word",
                "double quotes may only enclose a whole name, with spaces before "
                "the opening quote and after the closing one")
        tokens.append(Token(line[start:i], start + 1, line[start:i]))
    return tokens, None


def first_word(line: str) -> Token | None:
    """The first blank-separated word of ``line`` (quotes not interpreted)."""
    for index, ch in enumerate(line):
        if not ch.isspace() and ch not in _ZERO_WIDTH:
            end = index
            while end < len(line) and not line[end].isspace():
                end += 1
            word = line[index:end]
            return Token(word, index + 1, word)
    return None
