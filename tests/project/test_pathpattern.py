"""path-to-regexp patterns (vercel.json sources) and legacy regex routes (SPEC §5)."""

from __future__ import annotations

import pytest

from fnserve.errors import ConfigError
from fnserve.project.pathpattern import PathPattern, RegexPattern, substitute


@pytest.mark.parametrize(
    ("source", "path", "expected"),
    [
        ("/about", "/about", {}),
        ("/about", "/about/", None),  # strict: a trailing slash is significant
        ("/about", "/About", None),  # sensitive: case matters
        ("/api/:id", "/api/42", {"id": "42"}),
        ("/api/:id", "/api", None),
        ("/api/:id", "/api/42/x", None),
        ("/api/:id?", "/api", {"id": ""}),
        ("/api/:id?", "/api/7", {"id": "7"}),
        ("/:path*", "/a/b/c", {"path": "a/b/c"}),
        ("/:path*", "/", {"path": ""}),  # better: the root matches a zero-or-more pattern
        ("/docs/:path*", "/docs", {"path": ""}),
        ("/docs/:path*", "/docs/x/y", {"path": "x/y"}),
        ("/docs/:path+", "/docs", None),
        ("/docs/:path+", "/docs/x/y", {"path": "x/y"}),
        ("/blog/:slug(\\d+)", "/blog/12", {"slug": "12"}),
        ("/blog/:slug(\\d+)", "/blog/ab", None),
        ("/(.*)", "/anything/at/all", {"1": "anything/at/all"}),
        ("/(.*)", "/", {"1": ""}),
        ("/blog/:slug/(.*)", "/blog/a/b/c", {"slug": "a", "2": "b/c"}),
        ("/(\\d+)/:name", "/12/bob", {"1": "12", "name": "bob"}),
        ("/file{.:ext}?", "/file.txt", {"ext": "txt"}),
        ("/file{.:ext}?", "/file", {"ext": ""}),
        ("/a\\:b", "/a:b", {}),  # escaped colon is literal
        ("/v1.:fmt", "/v1.json", {"fmt": "json"}),  # "." is a prefix, like "/"
        ("/user-:id", "/user-9", {"id": "9"}),
    ],
)
def test_match(source: str, path: str, expected: dict[str, str] | None) -> None:
    assert PathPattern.compile(source).match(path) == expected


def test_keys_are_named_or_numbered_by_position() -> None:
    assert PathPattern.compile("/blog/:slug/(.*)/:page").keys == ("slug", "2", "page")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("/foo*", "unexpected '*'"),
        ("/:", "missing parameter name"),
        ("/(", "unbalanced"),
        ("/((a))", "capturing group"),
        ("/()", "empty group"),
        ("/(?x)", "cannot start with '?'"),
        ("/:a/:a", "appears twice"),
        ("/{:a", "unexpected end of pattern"),
        ("foo", "does not start with '/'"),
        ("", "non-empty string"),
        ("/x\\", "escapes nothing"),
        ("/([)", "bad pattern"),  # re cannot compile it
    ],
)
def test_bad_patterns_name_where_and_what(source: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        PathPattern.compile(source, "vercel.json", "rewrites[3].source")
    err = info.value
    assert err.source == "vercel.json" and err.key == "rewrites[3].source"
    assert problem in err.problem
    assert ":name" in (err.allowed or "")


def test_non_string_source_is_an_error() -> None:
    with pytest.raises(ConfigError, match="expected a non-empty string"):
        PathPattern.compile(42, "vercel.json", "redirects[0].source")


@pytest.mark.parametrize(
    ("source", "path", "destination", "expected"),
    [
        ("/blog/:slug", "/blog/hello", "/api/posts?slug=:slug", "/api/posts?slug=hello"),
        ("/old/:path*", "/old/a/b", "/new/:path*", "/new/a/b"),
        ("/old/:path*", "/old", "/new/:path*", "/new"),  # empty optional drops its slash
        ("/(.*)", "/x/y", "/api/index.py?p=$1", "/api/index.py?p=x/y"),
        ("/blog/:slug/(.*)", "/blog/a/b", "/n/$1/$2", "/n/a/b"),
        ("/a/:id", "/a/1", "https://example.com/items/:id?x=:id#:id", "https://example.com/items/1?x=1#1"),
        ("/a/:id", "/a/1", "http://localhost:8080/:id", "http://localhost:8080/1"),  # port untouched
        ("/a/:id", "/a/1", "/b/:other", "/b/:other"),  # unknown names stay as written
        ("/a/:id", "/a/1", "/b/$9", "/b/$9"),  # out-of-range $N stays
        ("/a/:id", "/a/hello%20world", "/b/:id", "/b/hello%20world"),  # encoded stays encoded
        ("/a/:id", "/a/x y", "/b/:id", "/b/x%20y"),  # decoded space re-encoded
        ("/a/:id", "/a/1", "/b?next=:id&q=a%20b", "/b?next=1&q=a%20b"),
    ],
)
def test_substitute(source: str, path: str, destination: str, expected: str) -> None:
    pattern = PathPattern.compile(source)
    params = pattern.match(path)
    assert params is not None
    assert pattern.substitute(destination, params) == expected


def test_rewrite_appends_unused_named_params_to_query() -> None:
    pattern = PathPattern.compile("/users/:id/(.*)")
    params = pattern.match("/users/42/edit")
    assert params is not None
    assert pattern.substitute("/api/users.py", params, rewrite=True) == "/api/users.py?id=42"
    assert pattern.substitute("/api/users.py?a=1", params, rewrite=True) == "/api/users.py?a=1&id=42"
    # a destination that uses a parameter gets nothing appended (Vercel's rule)
    assert pattern.substitute("/api/u/:id", params, rewrite=True) == "/api/u/42"
    # redirects never append
    assert pattern.substitute("/api/users.py", params) == "/api/users.py"


def test_an_appended_multi_segment_param_is_percent_encoded_like_a_dynamic_segment() -> None:
    """``/app/:path*`` → ``/api/index`` gives ``path=about%2Fteam`` (as Vercel's routes do under
    vclocal, and as fnserve encodes ``[...x]`` values), not a raw ``/``."""
    pattern = PathPattern.compile("/app/:path*")
    params = pattern.match("/app/about/team")
    assert params is not None
    assert pattern.substitute("/api/index", params, rewrite=True) == "/api/index?path=about%2Fteam"


def test_module_substitute_without_keys_uses_param_order() -> None:
    assert substitute("/x/$1/:b", {"a": "1", "b": "2"}) == "/x/1/2"


def test_str_is_the_source() -> None:
    assert str(PathPattern.compile("/a/:b")) == "/a/:b"


class TestRegexPattern:
    def test_anchored_and_case_insensitive(self) -> None:
        pattern = RegexPattern.compile("/api/(.*)")
        assert pattern.match("/API/x") == {"1": "x"}
        assert pattern.match("/v2/api/x") is None  # anchored at the start
        assert RegexPattern.compile("/a").match("/ab") is None  # and at the end

    def test_explicit_anchors_kept(self) -> None:
        assert RegexPattern.compile("^/a/(\\d+)$").match("/a/12") == {"1": "12"}

    def test_js_named_groups_and_dollar_substitution(self) -> None:
        pattern = RegexPattern.compile("/api/(?<name>[^/]+)/(\\d+)")
        params = pattern.match("/api/bob/7")
        assert params == {"1": "bob", "2": "7", "name": "bob"}
        assert pattern.substitute("/api/index.py?name=$name&n=$2&x=${name}", params) == (
            "/api/index.py?name=bob&n=7&x=bob"
        )

    def test_unmatched_group_is_empty(self) -> None:
        pattern = RegexPattern.compile("/a(/b)?")
        assert pattern.match("/a") == {"1": ""}

    def test_bad_regex_names_the_key(self) -> None:
        with pytest.raises(ConfigError) as info:
            RegexPattern.compile("/api/(", "vercel.json", "routes[2].src")
        assert info.value.key == "routes[2].src" and "bad regular expression" in info.value.problem
