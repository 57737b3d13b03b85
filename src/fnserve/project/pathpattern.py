"""Path patterns of ``vercel.json`` / ``edgeone.json`` rules (SPEC §5).

Two pattern flavours share one small interface (``match``, ``substitute``, ``keys``):

- :class:`PathPattern` — the path-to-regexp syntax Vercel compiles ``rewrites``, ``redirects`` and
  ``headers`` sources with (path-to-regexp 6, options ``strict: true, sensitive: true,
  delimiter: "/"``): ``/:id``, ``/:id?``, ``/:path*``, ``/:path+``, ``/:slug(\\d+)``, unnamed groups
  ``(.*)``, ``{...}`` groups (``/file{.:ext}?``) and ``\\`` escapes. Matching is case-sensitive and
  a trailing slash is significant (``trailingSlash`` handling is the server's job, before matching).
- :class:`RegexPattern` — the plain regular expressions of legacy ``routes[].src`` (anchored with
  ``^...$`` like Vercel does, case-insensitive, JavaScript ``(?<name>...)`` groups accepted).

Parameters. ``match(path)`` returns ``dict[str, str]`` — every key of the pattern in order, missing
optional ones as ``""`` — or ``None``. Named parameters are keyed by name; unnamed groups by their
1-based position among all keys (``"/blog/:slug/(.*)"`` → keys ``("slug", "2")``), so that ``$N``
in a destination is the N-th key of the pattern, as in Vercel (``$1`` above is the slug).

Destinations. ``substitute(destination, params)`` replaces ``:name`` (with an optional trailing
``*``/``+``/``?`` modifier, as written in destinations such as ``/api/:path*``) and ``$N`` in the
path, the query and the fragment of ``destination`` — never in the scheme or host:port of an
absolute URL. Unknown names are left as written. An empty optional parameter also drops the ``/``
in front of it (``/docs/:rest*`` with ``rest=""`` → ``/docs``). With ``rewrite=True`` named
parameters the destination does not use are appended to its query, as Vercel does for rewrites.

Errors: ``compile`` raises :class:`fnserve.errors.ConfigError` naming ``where`` (the file and JSON
path of the key, e.g. ``vercel.json`` / ``rewrites[0].source``) and what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from fnserve.errors import ConfigError

__all__ = ["PathPattern", "RegexPattern", "js_regex", "substitute"]

_DEFAULT_SEGMENT = r"[^/]+?"  # path-to-regexp's default with delimiter "/"
_NAME_CHAR = re.compile(r"[A-Za-z0-9_]")
_ALLOWED = (
    "a path starting with '/', using path-to-regexp syntax: ':name', ':name?', ':name*', ':name+', "
    "':name(regex)', '(regex)', '{prefix:name suffix}?' and '\\\\' escapes"
)


@dataclass(frozen=True)
class _Token:
    """One lexer token of path-to-regexp (types as in its lexer)."""

    type: str  # MODIFIER, ESCAPED_CHAR, OPEN, CLOSE, NAME, PATTERN, CHAR, END
    index: int
    value: str


@dataclass(frozen=True)
class _Key:
    """A parameter of a compiled pattern: ``name``, its regex, prefix/suffix and modifier."""

    name: str
    pattern: str
    prefix: str
    suffix: str
    modifier: str


def _lex(source: str) -> list[_Token]:
    """Tokenise like path-to-regexp 6 ``lexer``; raises ``ValueError`` with a position."""
    tokens: list[_Token] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in "*+?":
            tokens.append(_Token("MODIFIER", i, ch))
            i += 1
        elif ch == "\\":
            if i + 1 >= n:
                raise ValueError(f"a '\\' at column {i + 1} escapes nothing")
            tokens.append(_Token("ESCAPED_CHAR", i, source[i + 1]))
            i += 2
        elif ch == "{":
            tokens.append(_Token("OPEN", i, ch))
            i += 1
        elif ch == "}":
            tokens.append(_Token("CLOSE", i, ch))
            i += 1
        elif ch == ":":
            j = i + 1
            while j < n and _NAME_CHAR.match(source[j]):
                j += 1
            if j == i + 1:
                raise ValueError(f"missing parameter name after ':' at column {i + 1}")
            tokens.append(_Token("NAME", i, source[i + 1 : j]))
            i = j
        elif ch == "(":
            count, j, pattern = 1, i + 1, ""
            if j < n and source[j] == "?":
                raise ValueError(f"a group cannot start with '?' at column {j + 1}")
            while j < n:
                if source[j] == "\\":
                    pattern += source[j : j + 2]
                    j += 2
                    continue
                if source[j] == ")":
                    count -= 1
                    if count == 0:
                        j += 1
                        break
                elif source[j] == "(":
                    count += 1
                    if j + 1 >= n or source[j + 1] != "?":
                        raise ValueError(
                            f"capturing group inside a group at column {j + 1}; use '(?:...)'"
                        )
                pattern += source[j]
                j += 1
            if count:
                raise ValueError(f"unbalanced '(' at column {i + 1}")
            if not pattern:
                raise ValueError(f"empty group '()' at column {i + 1}")
            tokens.append(_Token("PATTERN", i, pattern))
            i = j
        else:
            tokens.append(_Token("CHAR", i, ch))
            i += 1
    tokens.append(_Token("END", n, ""))
    return tokens


def _parse(source: str) -> list[str | _Key]:
    """Parse like path-to-regexp 6 ``parse`` (prefixes ``./``); literal runs stay strings."""
    tokens = _lex(source)
    result: list[str | _Key] = []
    pos, path = 0, ""

    def take(kind: str) -> str | None:
        nonlocal pos
        if pos < len(tokens) and tokens[pos].type == kind:
            pos += 1
            return tokens[pos - 1].value
        return None

    def must(kind: str) -> str:
        value = take(kind)
        if value is None:
            tok = tokens[pos]
            what = repr(tok.value) if tok.value else "end of pattern"
            raise ValueError(f"unexpected {what} at column {tok.index + 1}")
        return value

    def text() -> str:
        out = ""
        while True:
            value = take("CHAR")
            value = value if value is not None else take("ESCAPED_CHAR")
            if value is None:
                return out
            out += value

    while pos < len(tokens):
        char = take("CHAR")
        name = take("NAME")
        pattern = take("PATTERN")
        if name or pattern:
            prefix = char or ""
            if prefix not in ("", ".", "/"):
                path, prefix = path + prefix, ""
            if path:
                result.append(path)
                path = ""
            modifier = take("MODIFIER") or ""
            result.append(_Key(name or "", pattern or _DEFAULT_SEGMENT, prefix, "", modifier))
            continue
        value = char if char is not None else take("ESCAPED_CHAR")
        if value is not None:
            path += value
            continue
        if path:
            result.append(path)
            path = ""
        if take("OPEN") is not None:
            prefix = text()
            name = take("NAME") or ""
            pattern = take("PATTERN") or ""
            suffix = text()
            must("CLOSE")
            modifier = take("MODIFIER") or ""
            if name or pattern:
                result.append(_Key(name, pattern or _DEFAULT_SEGMENT, prefix, suffix, modifier))
            else:  # a plain optional literal group such as "{/}?"
                result.append(_Key("", "", prefix, suffix, modifier))
            continue
        must("END")
    # unnamed keys ("") get their 1-based position among all keys, so params["N"] is "$N"
    numbered: list[str | _Key] = []
    position = 0
    for item in result:
        if isinstance(item, _Key) and item.pattern:
            position += 1
            if not item.name:
                item = _Key(str(position), item.pattern, item.prefix, item.suffix, item.modifier)
        numbered.append(item)
    return numbered


def js_regex(pattern: str) -> str:
    """Convert the JavaScript-only regex syntax users write in JSON to Python's ``re``:
    named groups ``(?<name>...)`` → ``(?P<name>...)`` and ``\\k<name>`` → ``(?P=name)``."""
    pattern = re.sub(r"\(\?<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P<\1>", pattern)
    return re.sub(r"\\k<([A-Za-z_][A-Za-z0-9_]*)>", r"(?P=\1)", pattern)


def _to_regex(parts: list[str | _Key]) -> str:
    """Build the regex like path-to-regexp 6 ``tokensToRegexp`` (strict, end)."""
    out = ""
    for part in parts:
        if isinstance(part, str):
            out += re.escape(part)
            continue
        prefix, suffix = re.escape(part.prefix), re.escape(part.suffix)
        if not part.pattern:
            out += f"(?:{prefix}{suffix}){part.modifier}"
            continue
        pat = js_regex(part.pattern)
        if prefix or suffix:
            if part.modifier in ("+", "*"):
                opt = "?" if part.modifier == "*" else ""
                out += f"(?:{prefix}((?:{pat})(?:{suffix}{prefix}(?:{pat}))*){suffix}){opt}"
            else:
                out += f"(?:{prefix}({pat}){suffix}){part.modifier}"
        elif part.modifier in ("+", "*"):
            out += f"((?:{pat}){part.modifier})"
        else:
            out += f"({pat}){part.modifier}"
    return out


@dataclass(frozen=True)
class PathPattern:
    """A compiled path-to-regexp source. ``source``: as written; ``regex``: the compiled
    ``re.Pattern`` (full match); ``keys``: parameter names in order (unnamed: ``"1"``, ``"2"``…)."""

    source: str
    regex: re.Pattern[str]
    keys: tuple[str, ...]

    @classmethod
    def compile(cls, source: object, where: str = "pattern", key: str = "source") -> PathPattern:
        """Compile ``source``; ``where``/``key`` name the file and JSON path in errors.

        Raises ``ConfigError(where, key, problem, allowed)`` for a non-string, a source not
        starting with ``/`` or ``(``, a syntax error, or a regex ``re`` cannot compile."""
        if not isinstance(source, str) or not source:
            raise ConfigError(where, key, f"expected a non-empty string, found {source!r}", _ALLOWED)
        if not source.startswith(("/", "(")):
            raise ConfigError(where, key, f"{source!r} does not start with '/'", _ALLOWED)
        try:
            parts = _parse(source)
            regex = re.compile(_to_regex(parts), re.DOTALL)
        except (ValueError, re.error) as exc:
            raise ConfigError(where, key, f"bad pattern {source!r}: {exc}", _ALLOWED) from exc
        names = tuple(p.name for p in parts if isinstance(p, _Key) and p.pattern)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(where, key, f"parameter {dupes[0]!r} appears twice in {source!r}", _ALLOWED)
        return cls(source, regex, names)

    def __str__(self) -> str:
        return self.source

    def match(self, path: str) -> dict[str, str] | None:
        """Match the whole ``path`` (the request path, without the query). Returns every key →
        value (``""`` for an absent optional parameter) or ``None``. **better**: ``/`` also
        matches a pattern that matches the empty path (``/:path*``, ``/(.*)``), as users expect."""
        found = self.regex.fullmatch(path)
        if found is None and path == "/":
            found = self.regex.fullmatch("")  # "/:path*" and "/(.*)" also match the root
        if found is None:
            return None
        return {name: value or "" for name, value in zip(self.keys, found.groups())}

    def substitute(self, destination: str, params: Mapping[str, str], *, rewrite: bool = False) -> str:
        """Fill ``destination`` with ``params`` (see the module docstring); returns the URL or
        path. ``rewrite=True`` appends unused named parameters to the query (Vercel rewrites)."""
        return substitute(destination, params, self.keys, rewrite=rewrite)


@dataclass(frozen=True)
class RegexPattern:
    """A legacy ``routes[].src`` regex, anchored ``^...$`` and case-insensitive like Vercel's.
    ``keys``: ``"1"``…``"n"`` for every group, then the names of named groups."""

    source: str
    regex: re.Pattern[str]
    keys: tuple[str, ...]

    @classmethod
    def compile(cls, source: object, where: str = "pattern", key: str = "src") -> RegexPattern:
        """Compile a regex source; raises ``ConfigError`` naming ``where``/``key`` when invalid."""
        allowed = "a regular expression matched against the whole path, e.g. '/api/(.*)'"
        if not isinstance(source, str) or not source:
            raise ConfigError(where, key, f"expected a non-empty string, found {source!r}", allowed)
        body = source if source.startswith("^") else "^" + source
        body = body if body.endswith("$") and not body.endswith("\\$") else body + "$"
        try:
            regex = re.compile(js_regex(body), re.IGNORECASE)
        except re.error as exc:
            raise ConfigError(where, key, f"bad regular expression {source!r}: {exc}", allowed) from exc
        keys = tuple(str(i) for i in range(1, regex.groups + 1)) + tuple(regex.groupindex)
        return cls(source, regex, keys)

    def __str__(self) -> str:
        return self.source

    def match(self, path: str) -> dict[str, str] | None:
        """Returns ``{"1": ..., "n": ..., <named groups>}`` (``""`` for unmatched groups) or None."""
        found = self.regex.match(path)
        if found is None:
            return None
        params = {str(i): v or "" for i, v in enumerate(found.groups(), start=1)}
        params.update({k: v or "" for k, v in found.groupdict().items()})
        return params

    def substitute(self, destination: str, params: Mapping[str, str], *, rewrite: bool = False) -> str:
        """Replace ``$1``…``$n`` and ``$name`` in ``dest`` (legacy routes never add query params)."""
        def repl(m: re.Match[str]) -> str:
            name = m.group(1) or m.group(2)
            return params.get(name, m.group(0))

        return re.sub(r"\$(?:\{(\w+)\}|(\d+|[A-Za-z_]\w*))", repl, destination)


_DEST_TOKEN = re.compile(r"(/?):([A-Za-z0-9_]+)([*+?]?)|\$(\d+)")


def _fill(text: str, params: Mapping[str, str], keys: tuple[str, ...], used: set[str], safe: str) -> str:
    """Replace ``:name[modifier]`` and ``$N`` in one URL part; ``safe``: chars not escaped."""

    def repl(m: re.Match[str]) -> str:
        slash, name, modifier, number = m.group(1), m.group(2), m.group(3), m.group(4)
        if number is not None:
            idx = int(number) - 1
            if not 0 <= idx < len(keys) or keys[idx] not in params:
                return m.group(0)
            used.add(keys[idx])
            return quote(params[keys[idx]], safe=safe)
        if name not in params:
            return m.group(0)
        used.add(name)
        value = params[name]
        if value == "" and modifier in ("*", "?"):
            return ""
        return slash + quote(value, safe=safe)

    return _DEST_TOKEN.sub(repl, text)


def substitute(
    destination: str, params: Mapping[str, str], keys: tuple[str, ...] = (), *, rewrite: bool = False
) -> str:
    """Fill ``destination`` (path or absolute URL, with optional ``?query`` and ``#fragment``)
    from ``params``; ``keys`` orders the parameters for ``$N``. Values are inserted as matched,
    only characters that would break the URL part are percent-encoded."""
    keys = keys or tuple(params)
    scheme_host, rest = "", destination
    found = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", destination)
    if found:
        scheme_host, rest = found.group(0), destination[found.end() :]
    rest, hash_sep, fragment = rest.partition("#")
    path, query_sep, query = rest.partition("?")
    used: set[str] = set()
    path = _fill(path, params, keys, used, safe="/:@!$&'()*+,;=-._~%")
    query = _fill(query, params, keys, used, safe="/:@!$'()*+,;-._~%=")
    fragment = _fill(fragment, params, keys, used, safe="/:@!$&'()*+,;=-._~%?")
    if rewrite and not used:
        extra = [
            f"{quote(k, safe='')}={quote(v, safe='')}"
            for k, v in params.items()
            if not k.isdigit() and not re.search(rf"(?:^|&){re.escape(k)}=", query)
        ]
        if extra:
            query = "&".join([query] + extra if query else extra)
            query_sep = "?"
    if scheme_host and not path:
        path = "" if not (query_sep or hash_sep) else "/"
    return scheme_host + path + (query_sep + query if query_sep else "") + (hash_sep + fragment)
