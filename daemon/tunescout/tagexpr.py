"""Tag text and tag expressions: what counts as the same artist or album, and the little
language of `--where` and `query` (`genre=rock and (artist~bowie or not date<1970)`).

A leaf (numpy-free, no tunescout imports but errors): the config checks a configured playlist's
expressions when it is read, and the playlist engine filters with them.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from tunescout.errors import PlaylistError

# --- tag text: what counts as the same artist or album -------------------------------------------


def normalise_text(text: str) -> str:
    """Return text folded for comparison: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def tag_texts(tags: Mapping[str, Any], key: str) -> list[str]:
    """Return a tag's values as strings (tags hold str, list[str] or int)."""
    value = tags.get(key)
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [str(item) for item in items if str(item).strip()]


# --- the tag expression: genre=rock and (artist~bowie or not date<1970) ------------------------

TagFilter = Callable[[Mapping[str, Any]], bool]
_TOKEN = re.compile(
    r"""\s*(?:(?P<paren>[()])|(?P<op>!=|!~|<=|>=|=|~|<|>)|"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'"""
    r"""|(?P<word>[^\s()=~<>!"']+))"""
)
_NUMBER = re.compile(r"\s*(-?\d+(?:\.\d+)?)")


def parse_where(text: str) -> TagFilter:
    """Compile a tag expression; raise PlaylistError naming the place it went wrong.

    Grammar: `or` of `and` of [`not`] comparisons `key OP value` or parenthesised expressions.
    OP: `=` equal, `!=` not equal, `~` contains, `!~` does not contain (all case-insensitive),
    `<` `<=` `>` `>=` compare the leading number (a year in `date`). A list tag matches when any
    of its values does; a missing tag matches only `!=` and `!~`.
    """
    tokens = _tokenise(text)
    parser = _Parser(text, tokens)
    result = parser.expression()
    if parser.position < len(tokens):
        raise PlaylistError(f"--where {text!r}: unexpected {tokens[parser.position][1]!r}")
    return result


def _tokenise(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        if not text[position:].strip():
            break
        match = _TOKEN.match(text, position)
        if match is None:
            raise PlaylistError(f"--where {text!r}: cannot read {text[position:].strip()!r}")
        kind = match.lastgroup or "word"
        value = match.group(kind)
        if kind in ("dq", "sq"):
            kind = "text"
        elif kind == "word" and value.lower() in ("and", "or", "not"):
            kind = value.lower()
        tokens.append((kind, value))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens; each method returns a compiled TagFilter."""

    def __init__(self, text: str, tokens: list[tuple[str, str]]) -> None:
        self.text = text
        self.tokens = tokens
        self.position = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, *kinds: str) -> tuple[str, str]:
        token = self._peek()
        if token is None or token[0] not in kinds:
            found = repr(token[1]) if token else "the end"
            raise PlaylistError(f"--where {self.text!r}: expected {' or '.join(kinds)}, found {found}")
        self.position += 1
        return token

    def expression(self) -> TagFilter:
        parts = [self._conjunction()]
        while (token := self._peek()) is not None and token[0] == "or":
            self.position += 1
            parts.append(self._conjunction())
        return parts[0] if len(parts) == 1 else (lambda tags: any(p(tags) for p in parts))

    def _conjunction(self) -> TagFilter:
        parts = [self._negation()]
        while (token := self._peek()) is not None and token[0] == "and":
            self.position += 1
            parts.append(self._negation())
        return parts[0] if len(parts) == 1 else (lambda tags: all(p(tags) for p in parts))

    def _negation(self) -> TagFilter:
        token = self._peek()
        if token is not None and token[0] == "not":
            self.position += 1
            inner = self._negation()
            return lambda tags: not inner(tags)
        if token is not None and token == ("paren", "("):
            self.position += 1
            inner = self.expression()
            if self._take("paren")[1] != ")":
                raise PlaylistError(f"--where {self.text!r}: expected ')'")
            return inner
        key = self._take("word", "text")[1]
        op = self._take("op")[1]
        value = self._take("word", "text")[1]
        return _comparison(self.text, normalise_text(key), op, value)


def _comparison(text: str, key: str, op: str, value: str) -> TagFilter:
    """Return the filter for one `key OP value`."""
    key = "date" if key == "year" else key
    wanted = normalise_text(value)
    if op in ("<", "<=", ">", ">="):
        match = _NUMBER.match(value)
        if match is None:
            raise PlaylistError(f"--where {text!r}: {key}{op}{value} needs a number after {op!r}")
        limit = float(match.group(1))
        compare: Callable[[float], bool] = {
            "<": lambda x: x < limit, "<=": lambda x: x <= limit,
            ">": lambda x: x > limit, ">=": lambda x: x >= limit,
        }[op]

        def numeric(tags: Mapping[str, Any]) -> bool:
            numbers = (_NUMBER.match(v) for v in tag_texts(tags, key))
            return any(compare(float(m.group(1))) for m in numbers if m)

        return numeric
    test: Callable[[str], bool] = (lambda v: v == wanted) if op in ("=", "!=") else (lambda v: wanted in v)
    negate = op.startswith("!")

    def textual(tags: Mapping[str, Any]) -> bool:
        hit = any(test(normalise_text(v)) for v in tag_texts(tags, key))
        return hit != negate

    return textual
