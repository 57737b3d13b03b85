"""``runtime.routetrie``: the one route trie, on plain data (what the worker builds from the direct plan)."""

from __future__ import annotations

import pytest

from fnserve.runtime.routetrie import RouteTrie, split_path


def _trie() -> RouteTrie[str]:
    trie: RouteTrie[str] = RouteTrie()
    trie.insert([("literal", "api"), ("literal", "users")], False, "users")
    trie.insert([("literal", "api"), ("literal", "users"), ("param", "id")], False, "user")
    trie.insert([("literal", "api"), ("catchall", "rest")], False, "rest")
    trie.insert([("literal", "api")], False, "index")
    trie.insert([("literal", "docs"), ("optional", "slug")], False, "docs")
    trie.insert([("literal", "flask")], True, "flaskapp", "/flask")
    return trie


@pytest.mark.parametrize(("path", "payload", "captured"), [
    ("/api/users", "users", ()),
    ("/api/users/", "users", ()),
    ("/api/users/42", "user", ("42",)),
    ("/api/users/42/x", "rest", ("users/42/x",)),
    ("/api", "index", ()),
    ("/docs", "docs", ("",)),
    ("/docs/a/b", "docs", ("a/b",)),
    ("/flask", "flaskapp", ()),
    ("/flask/deep/er", "flaskapp", ()),
])
def test_priority_order(path, payload, captured):
    found = _trie().lookup(path)
    assert found is not None
    leaf, values = found
    assert (leaf.payload, values) == (payload, captured)


def test_no_match_and_names_and_root_path():
    trie = _trie()
    assert trie.lookup("/") is None
    assert trie.lookup("/other") is None
    leaf, _ = trie.lookup("/api/users/1")  # type: ignore[misc]
    assert leaf.names == ("id",)
    leaf, _ = trie.lookup("/flask/x")  # type: ignore[misc]
    assert leaf.root_path == "/flask"


def test_unknown_segment_kind_is_refused():
    with pytest.raises(ValueError, match="unknown route segment kind"):
        RouteTrie().insert([("regex", "x")], False, "p")


def test_split_path():
    assert split_path("/") == []
    assert split_path("/a//b/") == ["a", "", "b"]
