"""vercel.json / edgeone.json parsing and validation: every key valid and invalid (SPEC §5)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fnserve.errors import ConfigError
from fnserve.project.vercel_json import load_platform_config, parse_edgeone_json, parse_vercel_json

PROJECTS = Path(__file__).parents[1] / "projects"


def write(tmp_path: Path, data: Any, name: str = "vercel.json") -> Path:
    (tmp_path / name).write_text(json.dumps(data) if not isinstance(data, str) else data)
    return tmp_path


def error_of(data: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_vercel_json(data)
    assert info.value.source == "vercel.json"
    return info.value


# ------------------------------------------------------------------ the full fixture


def test_full_fixture_every_key() -> None:
    vc = load_platform_config(PROJECTS / "config_full")
    assert [p.name for p in vc.files] == ["vercel.json"]
    assert [(f.glob, f.max_duration, f.memory) for f in vc.functions] == [
        ("api/**/*.py", 30.0, 1024), ("api/slow.py", 120.0, None)]
    assert vc.functions[1].include_files == "data/**"
    assert vc.functions[1].exclude_files == "{tests/**,docs/**}"
    assert [(str(r.source), r.destination) for r in vc.rewrites] == [
        ("/blog/:slug", "/api/posts?slug=:slug"), ("/app/(.*)", "/api/app")]
    assert [r.status_code for r in vc.redirects] == [308, 307, 301]
    assert vc.headers[0].headers == (("Cache-Control", "no-store"),)
    assert vc.clean_urls is True and vc.trailing_slash is False
    assert dict(vc.env) == {"FROM_VERCEL_JSON": "vercel", "OVERRIDDEN": "vercel"}
    assert vc.build_command == "python build.py"
    assert vc.install_command == "pip install -r requirements.txt"
    assert vc.output_directory == "public" and vc.framework is None
    assert vc.warnings == ()


def test_rules_are_compiled_and_usable() -> None:
    vc = load_platform_config(PROJECTS / "config_full")
    rule = vc.rewrites[0]
    params = rule.source.match("/blog/hello")
    assert rule.source.substitute(rule.destination, params) == "/api/posts?slug=hello"
    assert vc.headers[0].source.match("/api/x") == {"1": "x"}
    assert rule.where == "vercel.json: rewrites[0]"


def test_no_files_gives_empty_config(tmp_path: Path) -> None:
    vc = load_platform_config(tmp_path)
    assert vc.files == () and vc.rewrites == () and vc.trailing_slash is None


# ------------------------------------------------------------------ syntax and top level


def test_json_syntax_error_has_line_and_column() -> None:
    with pytest.raises(ConfigError) as info:
        load_platform_config(PROJECTS / "config_bad_json")
    assert info.value.source == "vercel.json"
    assert info.value.key == "line 4:3"
    assert "invalid JSON" in str(info.value)


def test_top_level_must_be_an_object() -> None:
    assert "expected an object" in error_of([1, 2]).problem


def test_unknown_top_level_key_lists_allowed() -> None:
    err = error_of({"rewrite": []})
    assert err.key == "rewrite" and err.problem == "unknown key"
    assert "rewrites" in (err.allowed or "")


@pytest.mark.parametrize("key", ["crons", "regions", "images", "github", "public", "devCommand", "version"])
def test_known_vercel_keys_fnserve_ignores_are_warnings(key: str) -> None:
    vc = parse_vercel_json({key: True})
    assert vc.warnings == (f"vercel.json: {key}: accepted but not used by fnserve",)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"cleanUrls": "yes"}, "cleanUrls"),
        ({"trailingSlash": 1}, "trailingSlash"),
        ({"buildCommand": 3}, "buildCommand"),
        ({"installCommand": ["npm"]}, "installCommand"),
        ({"framework": True}, "framework"),
        ({"outputDirectory": 1}, "outputDirectory"),
        ({"env": []}, "env"),
        ({"env": {"A": 1}}, "env.A"),
        ({"env": {"BAD-NAME": "x"}}, 'env["BAD-NAME"]'),
        ({"rewrites": {}}, "rewrites"),
    ],
)
def test_bad_scalar_values(data: dict, key: str) -> None:
    assert error_of(data).key == key


def test_nullable_scalars_and_trailing_slash_values() -> None:
    assert parse_vercel_json({"buildCommand": None, "framework": None}).build_command is None
    assert parse_vercel_json({"trailingSlash": True}).trailing_slash is True
    assert parse_vercel_json({"trailingSlash": False}).trailing_slash is False
    assert parse_vercel_json({"framework": "flask"}).framework == "flask"
    assert parse_vercel_json({"$schema": "https://openapi.vercel.sh/vercel.json"}).warnings == ()


# ------------------------------------------------------------------ functions


def test_functions_valid_and_runtime_warns() -> None:
    vc = parse_vercel_json({"functions": {"api/*.py": {"maxDuration": 1.5, "runtime": "vercel-python@1"},
                                          "api/x.py": {"regions": ["iad1"]}}})
    assert vc.functions[0].max_duration == 1.5 and vc.functions[0].runtime == "vercel-python@1"
    assert vc.functions[1].order == 1
    assert len(vc.warnings) == 2 and "runtime" in vc.warnings[0] and "regions" in vc.warnings[1]


@pytest.mark.parametrize(
    ("spec", "key", "allowed"),
    [
        ({"maxDuration": 0}, 'functions["api/*.py"].maxDuration', "seconds > 0"),
        ({"maxDuration": "30"}, 'functions["api/*.py"].maxDuration', "seconds > 0"),
        ({"maxDuration": True}, 'functions["api/*.py"].maxDuration', "seconds > 0"),
        ({"memory": 1.5}, 'functions["api/*.py"].memory', "MB"),
        ({"memory": 0}, 'functions["api/*.py"].memory', "MB"),
        ({"includeFiles": 3}, 'functions["api/*.py"].includeFiles', "string"),
        ({"excludeFiles": ["a"]}, 'functions["api/*.py"].excludeFiles', "string"),
        ({"maxduration": 3}, 'functions["api/*.py"].maxduration', "maxDuration"),
        ("fast", 'functions["api/*.py"]', "object"),
    ],
)
def test_functions_invalid(spec: Any, key: str, allowed: str) -> None:
    err = error_of({"functions": {"api/*.py": spec}})
    assert err.key == key
    assert allowed in (err.allowed or "")


def test_functions_must_be_an_object() -> None:
    assert error_of({"functions": []}).key == "functions"


# ------------------------------------------------------------------ rewrites, redirects, headers


def test_rewrite_with_has_and_missing() -> None:
    vc = parse_vercel_json({"rewrites": [{
        "source": "/(.*)", "destination": "/api/x",
        "has": [{"type": "header", "key": "x-user", "value": "(?<user>[a-z]+)"}, {"type": "host", "value": "a.com"}],
        "missing": [{"type": "cookie", "key": "session"}],
    }]})
    rule = vc.rewrites[0]
    assert rule.has[0].test("bob") == {"user": "bob"}
    assert rule.has[0].test("BOB") is None and rule.has[0].test(None) is None
    assert rule.has[1].key is None and rule.has[1].test("a.com") == {}
    assert rule.missing[0].test("anything") == {}


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({"destination": "/x"}, "rewrites[0].source"),
        ({"source": "/x"}, "rewrites[0].destination"),
        ({"source": "/x", "destination": ""}, "rewrites[0].destination"),
        ({"source": "x", "destination": "/y"}, "rewrites[0].source"),
        ({"source": "/:", "destination": "/y"}, "rewrites[0].source"),
        ({"source": "/x", "destination": "/y", "permanent": True}, "rewrites[0].permanent"),
        ({"source": "/x", "destination": "/y", "has": {}}, "rewrites[0].has"),
        ({"source": "/x", "destination": "/y", "has": [{"type": "ip"}]}, "rewrites[0].has[0].type"),
        ({"source": "/x", "destination": "/y", "has": [{"type": "host"}]}, "rewrites[0].has[0].value"),
        ({"source": "/x", "destination": "/y", "has": [{"type": "query"}]}, "rewrites[0].has[0].key"),
        ({"source": "/x", "destination": "/y", "has": [{"type": "query", "key": "a", "value": "("}]},
         "rewrites[0].has[0].value"),
        ({"source": "/x", "destination": "/y", "missing": [{"type": "cookie", "key": "a", "x": 1}]},
         "rewrites[0].missing[0].x"),
        ("/x -> /y", "rewrites[0]"),
    ],
)
def test_rewrite_invalid(rule: Any, key: str) -> None:
    assert error_of({"rewrites": [rule]}).key == key


@pytest.mark.parametrize(
    ("extra", "status"),
    [({}, 308), ({"permanent": True}, 308), ({"permanent": False}, 307), ({"statusCode": 301}, 301),
     ({"statusCode": 302}, 302), ({"statusCode": 303}, 303), ({"statusCode": 307}, 307)],
)
def test_redirect_status(extra: dict, status: int) -> None:
    vc = parse_vercel_json({"redirects": [{"source": "/a", "destination": "/b", **extra}]})
    assert vc.redirects[0].status_code == status


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ({"permanent": "yes"}, "redirects[0].permanent"),
        ({"statusCode": 200}, "redirects[0].statusCode"),
        ({"statusCode": "301"}, "redirects[0].statusCode"),
        ({"permanent": True, "statusCode": 301}, "redirects[0].permanent"),
        ({"status": 301}, "redirects[0].status"),
    ],
)
def test_redirect_invalid(extra: dict, key: str) -> None:
    err = error_of({"redirects": [{"source": "/a", "destination": "/b", **extra}]})
    assert err.key == key
    assert str(err).startswith(f"vercel.json: {key}:")


def test_headers_valid() -> None:
    vc = parse_vercel_json({"headers": [{"source": "/(.*)", "headers": [{"key": "X-A", "value": "1"},
                                                                        {"key": "X-B", "value": ""}]}]})
    assert vc.headers[0].headers == (("X-A", "1"), ("X-B", ""))


@pytest.mark.parametrize(
    ("rule", "key"),
    [
        ({"source": "/a"}, "headers[0].headers"),
        ({"source": "/a", "headers": {"X-A": "1"}}, "headers[0].headers"),
        ({"source": "/a", "headers": [{"key": "X A", "value": "1"}]}, "headers[0].headers[0].key"),
        ({"source": "/a", "headers": [{"key": "X-A", "value": 1}]}, "headers[0].headers[0].value"),
        ({"source": "/a", "headers": [{"key": "X-A"}]}, "headers[0].headers[0].value"),
        ({"source": "/a", "headers": [{"name": "X-A", "value": "1"}]}, "headers[0].headers[0].name"),
    ],
)
def test_headers_invalid(rule: dict, key: str) -> None:
    assert error_of({"headers": [rule]}).key == key


# ------------------------------------------------------------------ legacy builds + routes


def test_legacy_fixture() -> None:
    vc = load_platform_config(PROJECTS / "config_legacy_routes")
    assert [(b.src, b.use) for b in vc.builds] == [("api/index.py", "@vercel/python")]
    first, handle, named, catch_all = vc.routes
    assert first.status == 301 and first.headers == (("Location", "/new/$1"),)
    assert first.pattern.substitute(first.headers[0][1], first.pattern.match("/old/x")) == "/new/x"
    assert handle.handle == "filesystem" and handle.src is None and handle.pattern is None
    assert named.methods == ("GET", "POST")
    assert named.pattern.substitute(named.dest, named.pattern.match("/api/bob")) == "/api/index.py?name=bob"
    assert catch_all.continue_ is False and catch_all.dest == "/api/index.py"
    assert vc.warnings == ("vercel.json: version: accepted but not used by fnserve",)


def test_route_case_sensitive_flag() -> None:
    vc = parse_vercel_json({"routes": [{"src": "/A", "caseSensitive": True}, {"src": "/A"}]})
    assert vc.routes[0].pattern.match("/a") is None
    assert vc.routes[1].pattern.match("/a") == {}


@pytest.mark.parametrize(
    ("route", "key"),
    [
        ({"dest": "/x"}, "routes[0].src"),
        ({"src": "/(", "dest": "/x"}, "routes[0].src"),
        ({"src": "/a", "status": 99}, "routes[0].status"),
        ({"src": "/a", "status": "301"}, "routes[0].status"),
        ({"src": "/a", "headers": [["a", "b"]]}, "routes[0].headers"),
        ({"src": "/a", "headers": {"X": 1}}, "routes[0].headers.X"),
        ({"src": "/a", "methods": "GET"}, "routes[0].methods"),
        ({"src": "/a", "continue": "yes"}, "routes[0].continue"),
        ({"src": "/a", "dest": 3}, "routes[0].dest"),
        ({"src": "/a", "middleware": 1}, "routes[0].middleware"),
        ({"handle": "nope"}, "routes[0].handle"),
        ({"handle": "filesystem", "src": "/a"}, "routes[0].handle"),
    ],
)
def test_route_invalid(route: dict, key: str) -> None:
    assert error_of({"routes": [route]}).key == key


def test_routes_cannot_mix_with_new_keys() -> None:
    err = error_of({"routes": [{"src": "/a"}], "rewrites": [], "cleanUrls": True})
    assert err.key == "routes" and "rewrites, cleanUrls" in err.problem


@pytest.mark.parametrize(
    ("build", "key"),
    [({"src": "api/*.py"}, "builds[0].use"), ({"use": "@vercel/python", "config": []}, "builds[0].config"),
     ({"use": "x", "src": 1}, "builds[0].src"), ({"use": "x", "dist": "y"}, "builds[0].dist")],
)
def test_build_invalid(build: dict, key: str) -> None:
    assert error_of({"builds": [build]}).key == key


# ------------------------------------------------------------------ edgeone.json


def test_edgeone_fixture() -> None:
    vc = load_platform_config(PROJECTS / "config_edgeone")
    assert [p.name for p in vc.files] == ["edgeone.json"]
    assert [r.status_code for r in vc.redirects] == [301, 302]
    assert vc.redirects[0].source.substitute(vc.redirects[0].destination, {"id": "7"}) == "/news-articles/7"
    assert str(vc.rewrites[0].source) == "/assets/:path*"
    assert vc.headers[0].headers == (("X-Frame-Options", "DENY"),)
    assert vc.warnings == ("edgeone.json: nodeVersion: accepted but not used by fnserve",)


def test_edgeone_defaults_and_domain_redirects() -> None:
    vc = parse_edgeone_json({"redirects": [{"source": "/a", "destination": "/b"},
                                           {"source": "$host", "destination": "$wwwhost", "statusCode": 301}]})
    assert [r.status_code for r in vc.redirects] == [301]
    assert "domain redirects" in vc.warnings[0]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"functions": {}}, "functions"),
        ({"redirects": [{"source": "/a", "destination": "/b", "statusCode": 303}]}, "redirects[0].statusCode"),
        ({"redirects": [{"source": "/a", "destination": "/b", "permanent": True}]}, "redirects[0].permanent"),
        ({"rewrites": [{"source": "/a"}]}, "rewrites[0].destination"),
    ],
)
def test_edgeone_invalid(data: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_edgeone_json(data)
    assert info.value.source == "edgeone.json" and info.value.key == key


def test_both_files_merge_vercel_first(tmp_path: Path) -> None:
    write(tmp_path, {"redirects": [{"source": "/v", "destination": "/1"}], "buildCommand": "make"})
    write(tmp_path, {"redirects": [{"source": "/e", "destination": "/2"}], "buildCommand": "npm run build",
                     "installCommand": "npm ci"}, "edgeone.json")
    vc = load_platform_config(tmp_path)
    assert [str(r.source) for r in vc.redirects] == ["/v", "/e"]
    assert vc.build_command == "make" and vc.install_command == "npm ci"
    assert [p.name for p in vc.files] == ["vercel.json", "edgeone.json"]


def test_edgeone_syntax_error_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "{\n  nope\n}", "edgeone.json")
    with pytest.raises(ConfigError) as info:
        load_platform_config(tmp_path)
    assert info.value.source == "edgeone.json" and info.value.key == "line 2:3"
