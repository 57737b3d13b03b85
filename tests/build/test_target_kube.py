"""``--target knative`` / ``--target kubernetes``: what is generated and how fnserve's limits map
to the engines' knobs (issue 11 item 3; docs/DEPLOY.md). Schema validation: test_target_kube_schemas.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import yaml
from buildsupport import handler, run_cli, serving, write_project

from fnserve.build.manifest import read_manifest
from fnserve.build.targets import TARGETS, TargetOptions, check_image, kube
from fnserve.build.targets.kube import KnativeTarget, KubernetesTarget, default_image, k8s_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ASGI_APP = ("async def app(scope, receive, send):\n"
            "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
            "    await send({'type': 'http.response.body', 'body': b'asgi'})\n")


def build(project: Path, *args: str) -> Path:
    result = run_cli("build", str(project), "--no-install", "--target", "knative", "--target", "kubernetes", *args)
    assert result.exit_code == 0, result.output
    return project / ".fnserve" / "output"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def knative_of(output: Path) -> dict:
    return load(output / "knative" / "service.yaml")


def k8s_of(output: Path) -> dict[str, dict]:
    return {name: load(output / "kubernetes" / name) for name in ("deployment.yaml", "service.yaml", "hpa.yaml")}


def limits_project(root: Path, **pyproject: str) -> Path:
    """Four functions with different limits: vercel.json maxDuration/memory, [tool.fnserve] and
    [tool.fnserve.functions] concurrency/min/max instances, a grace period."""
    tool = pyproject.get("tool", "grace-period = 12\n")
    return write_project(root, {
        "api/fast.py": handler("'fast'"),
        "api/slow.py": handler("'slow'"),
        "api/big.py": handler("'big'"),
        "api/app.py": ASGI_APP,
        "vercel.json": json.dumps({"functions": {"api/slow.py": {"maxDuration": 450.5},
                                                 "api/big.py": {"memory": 3009}}}),
        "pyproject.toml": ("[project]\nname = 'limits'\nversion = '0'\n[tool.fnserve]\n" + tool
                           + '[tool.fnserve.functions."api/fast.py"]\nconcurrency-sync = 4\nmin-instances = 2\n'
                           "max-instances = 7\n"),
    })


def test_both_targets_are_registered_and_the_cli_lists_them():
    assert TARGETS["knative"] is KnativeTarget and TARGETS["kubernetes"] is KubernetesTarget
    text = " ".join(run_cli("build", "--help").output.split())
    assert "knative, kubernetes" in text and "--image NAME" in text


@pytest.mark.parametrize("example", ["showcase", "edgeone"])
def test_examples_render_one_service_with_the_default_image_and_defaults(tmp_path, example):
    project = tmp_path / example
    shutil.copytree(EXAMPLES / example, project)
    result = run_cli("build", str(project), "--no-install", "--target", "knative", "--target", "kubernetes")
    assert result.exit_code == 0, result.output
    output = project / ".fnserve" / "output"
    assert f"target knative: {output / 'knative' / 'service.yaml'} (image fnserve-{example}:latest;" in result.output
    assert sorted(p.name for p in (output / "kubernetes").iterdir()) == ["deployment.yaml", "hpa.yaml", "service.yaml"]
    functions = len(read_manifest(output).functions)
    assert f"{functions} function(s) in one service" in result.output

    svc = knative_of(output)
    assert (svc["apiVersion"], svc["kind"], svc["metadata"]["name"]) == ("serving.knative.dev/v1", "Service", example)
    template = svc["spec"]["template"]
    assert template["metadata"]["annotations"] == {
        "autoscaling.knative.dev/minScale": "0",  # no function keeps instances: scale to zero
        "fnserve/build-inputs": read_manifest(output).inputs[:16],
    }  # no maxScale: max-instances was left at its default (the build machine's CPU count)
    spec = template["spec"]
    assert (spec["containerConcurrency"], spec["timeoutSeconds"]) == (32, 300)  # concurrency_sync default (32)
    (c,) = spec["containers"]
    assert c["image"] == f"fnserve-{example}:latest"
    assert c["ports"] == [{"name": "http1", "containerPort": 8080}]
    assert "env" not in c  # Knative injects PORT (setting it is rejected)
    assert c["resources"] == {"requests": {"memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}
    assert c["readinessProbe"] == {"httpGet": {"path": "/_fnserve/ready"}}  # Knative probes it every 25 ms
    assert c["livenessProbe"]["httpGet"] == {"path": "/_fnserve/health"}
    assert c["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["runAsUser"] == 1000

    objs = k8s_of(output)
    dep, hpa = objs["deployment.yaml"], objs["hpa.yaml"]
    pod = dep["spec"]["template"]["spec"]
    assert "replicas" not in dep["spec"]  # the HPA owns it
    assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 5  # preStop + fnserve's default grace + margin
    (kc,) = pod["containers"]
    assert kc["env"] == [{"name": "PORT", "value": "8080"}]
    assert kc["resources"] == {"requests": {"cpu": "579m", "memory": "1024Mi"}, "limits": {"memory": "1024Mi"}}
    assert kc["readinessProbe"]["httpGet"] == {"path": "/_fnserve/ready", "port": "http"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 10)


def test_per_function_limits_map_to_the_engine_knobs(tmp_path):
    output = build(limits_project(tmp_path / "Limits_Demo"))
    svc = knative_of(output)
    annotations = svc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/minScale"] == "2"  # api/fast.py min-instances
    assert annotations["autoscaling.knative.dev/maxScale"] == "7"  # api/fast.py max-instances
    spec = svc["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] == 4  # the smallest per-instance concurrency (api/fast.py)
    assert spec["timeoutSeconds"] == 451  # api/slow.py maxDuration 450.5 s, rounded up
    assert spec["containers"][0]["resources"]["limits"] == {"memory": "3009Mi"}  # api/big.py
    assert svc["metadata"]["name"] == "limits-demo"
    assert spec["containers"][0]["image"] == "fnserve-limits-demo:latest"

    objs = k8s_of(output)
    pod = objs["deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 5 + 12 + 5  # [tool.fnserve] grace-period = 12
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "1701m", "memory": "3009Mi"},
                                                 "limits": {"memory": "3009Mi"}}  # 3009 MB / 1769 MB per CPU
    hpa = objs["hpa.yaml"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 7)


def test_an_app_function_counts_with_its_sync_concurrency(tmp_path):
    project = write_project(tmp_path / "p", {"api/app.py": ASGI_APP, "pyproject.toml":
                                             "[tool.fnserve]\nconcurrency-sync = 8\nconcurrency-asgi = 300\n"})
    spec = knative_of(build(project))["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] == 8


def test_image_option_is_used_checked_and_part_of_the_inputs(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'")})
    output = build(project, "--image", "ghcr.io/me/site:1.0")
    assert knative_of(output)["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/me/site:1.0"
    assert k8s_of(output)["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "ghcr.io/me/site:1.0"
    result = run_cli("build", str(project), "--no-install", "--target", "knative", "--target", "kubernetes",
                     "--image", "registry.local:5000/site@sha256:" + "a" * 64)
    assert result.exit_code == 0 and "up to date" not in result.output  # another image: rendered again
    assert knative_of(output)["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry.local:5000/")

    bad = run_cli("build", str(project), "--no-install", "--target", "knative", "--image", "My Site")
    assert bad.exit_code == 2
    assert "'My Site' is not a container image reference" in bad.output


def test_output_is_deterministic_in_a_fixed_key_order(tmp_path):
    output = build(limits_project(tmp_path / "p"))
    manifest = read_manifest(output)
    first = {p.name: p.read_bytes() for p in (output / "kubernetes").iterdir()}
    first["knative"] = (output / "knative" / "service.yaml").read_bytes()
    KnativeTarget().render(output, manifest, lambda _line: None)
    KubernetesTarget().render(output, manifest, lambda _line: None)
    again = {p.name: p.read_bytes() for p in (output / "kubernetes").iterdir()}
    again["knative"] = (output / "knative" / "service.yaml").read_bytes()
    assert again == first
    text = first["knative"].decode()
    assert text.startswith("# Generated by `fnserve build --target knative` from p;")
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body[:3] == ["apiVersion: serving.knative.dev/v1", "kind: Service", "metadata:"]


def test_a_failed_render_leaves_the_previous_folder_and_no_temporary_one(tmp_path, monkeypatch):
    output = build(write_project(tmp_path / "p", {"api/a.py": handler("'a'")}))
    before = {p.name: p.read_bytes() for p in (output / "kubernetes").iterdir()}
    calls = []

    def failing(obj, header=""):
        calls.append(obj["kind"])
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return "kind: x\n"

    monkeypatch.setattr(kube, "dump_yaml", failing)
    with pytest.raises(Exception, match="cannot write .*kubernetes: .*No space left"):
        KubernetesTarget(TargetOptions(image="other:1")).render(output, read_manifest(output), lambda _line: None)
    assert {p.name: p.read_bytes() for p in (output / "kubernetes").iterdir()} == before
    assert not [p.name for p in output.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_admin_port_and_a_long_timeout_are_reported(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"),
        "vercel.json": json.dumps({"functions": {"api/a.py": {"maxDuration": 800}}}),
        "pyproject.toml": "[tool.fnserve]\nadmin-port = 9100\n",
    })
    result = run_cli("build", str(project), "--no-install", "--target", "knative", "--target", "kubernetes")
    assert result.exit_code == 0, result.output
    assert "timeoutSeconds 800 is over Knative's default max-revision-timeout-seconds (600)" in result.output
    assert "admin-port is set" in result.output
    output = project / ".fnserve" / "output"
    assert knative_of(output)["spec"]["template"]["spec"]["containers"][0]["env"] == \
        [{"name": "FNSERVE_ADMIN_PORT", "value": ""}]
    assert {"name": "FNSERVE_ADMIN_PORT", "value": ""} in \
        k8s_of(output)["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]


def test_names_and_images():
    assert k8s_name("My_Project") == "my-project"
    assert k8s_name("2024 site!") == "fn-2024-site"
    assert k8s_name("___") == "fnserve"
    assert len(k8s_name("a" * 80)) == 50
    for good in ("site", "ghcr.io/me/site:1.0", "localhost:5000/a/b-c_d:latest", "a/b@sha256:" + "0" * 64):
        assert check_image(good) == good
    for bad in ("", "Site", "a b", "site:", "-site", "site:tag with space"):
        with pytest.raises(ValueError, match="not a container image reference"):
            check_image(bad)


def test_default_image_uses_the_project_folder(tmp_path):
    output = build(write_project(tmp_path / "9 Lives", {"api/a.py": handler("'a'")}))
    assert default_image(read_manifest(output)) == "fnserve-9-lives:latest"
    assert knative_of(output)["metadata"]["name"] == "fn-9-lives"


def test_the_probe_paths_answer_on_the_server_the_image_runs(tmp_path):
    """The probes point at what `fnserve start --from OUTPUT` (the image's command) serves."""
    project = tmp_path / "showcase"
    shutil.copytree(EXAMPLES / "showcase", project)
    output = build(project)
    (c,) = k8s_of(output)["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    with serving("--from", str(output)) as url:
        for probe in ("readinessProbe", "livenessProbe"):
            assert httpx.get(url + c[probe]["httpGet"]["path"], timeout=10).status_code == 200


def test_an_unchanged_build_renders_again_a_target_folder_that_is_gone(tmp_path):
    """A target folder removed (or never written because its render failed) after the output was
    in place is written again by the next build, although the inputs did not change."""
    project = tmp_path / "showcase"
    shutil.copytree(EXAMPLES / "showcase", project)
    output = build(project)
    shutil.rmtree(output / "knative")
    assert (output / "kubernetes" / "deployment.yaml").is_file()
    build(project)
    assert knative_of(output)["kind"] == "Service"
