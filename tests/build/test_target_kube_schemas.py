"""The YAML of ``--target knative`` / ``--target kubernetes`` against the published schemas.

- Kubernetes objects (Deployment, Service, HorizontalPodAutoscaler): ``kubernetes-validate``
  (the API's OpenAPI schemas as JSON Schema, shipped in the package: works offline), strict mode
  (unknown fields are errors, as ``kubectl apply --validate=strict``), for the oldest and the
  newest Kubernetes version it ships.
- Knative Service: the pydantic models that ``cloudcoil-models-knative-serving`` (PyPI) generates
  from the Knative Serving ``Service`` CRD's ``openAPIV3Schema`` (pinned in the ``test`` extra). A
  model ignores unknown fields and coerces ``"16"`` to 16, while the API server rejects or prunes
  them, so ``schema_errors`` also compares the document with the model's dump: a field the
  schema does not declare, or a value read as another type, is an error. The checks of Knative's
  admission webhook that no schema expresses (reserved env vars and ports, port names, probe
  ports, bounds) are
  written out by hand in ``knative_webhook_problems``: a labelled subset, from
  knative.dev/serving pkg/apis/serving/k8s_validation.go and pkg/apis/autoscaling.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import pydantic
import pytest
from cloudcoil.models.knative_serving.serving.v1 import Service as KnativeService
from test_target_kube import EXAMPLES, build, k8s_of, knative_of, limits_project

K8S_VERSIONS = ("1.25.0", "1.37.0")  # the oldest and newest schemas kubernetes-validate ships
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def _differences(doc: Any, dumped: Any, path: str = "") -> list[str]:
    """Where ``doc`` says more than, or other than, the model read: unknown fields (absent from
    the dump) and values read as another type or value. Defaults the dump adds are fine."""
    if isinstance(doc, dict):
        if not isinstance(dumped, dict):
            return [f"{path or '/'}: expected an object"]
        found = []
        for key, value in doc.items():
            where = f"{path}/{key}" if path else str(key)
            found += [f"{where}: unknown field"] if key not in dumped else _differences(value, dumped[key], where)
        return found
    if isinstance(doc, list):
        if not isinstance(dumped, list) or len(dumped) != len(doc):
            return [f"{path}: expected a list of {len(doc)}"]
        return [d for i, (a, b) in enumerate(zip(doc, dumped)) for d in _differences(a, b, f"{path}/{i}")]
    if type(doc) is not type(dumped) or doc != dumped:
        return [f"{path}: {doc!r} is not valid here (read as {dumped!r})"]
    return []


def schema_errors(doc: dict) -> list[str]:
    """The problems the Knative API server would find in ``doc`` (a ``Service``) by its schema."""
    try:
        model = KnativeService.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [f"{'/'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    return _differences(doc, model.model_dump(by_alias=True, exclude_none=True, mode="json"))


def knative_webhook_problems(svc: dict) -> list[str]:
    """HAND-WRITTEN SUBSET of Knative's admission webhook (not a published schema): what the
    webhook of Knative Serving 1.23 rejects among the fields fnserve writes."""
    problems = []
    name = svc["metadata"]["name"]
    if not DNS_1035.match(name) or len(name) > 63:
        problems.append(f"metadata.name {name!r} is not a DNS-1035 label")
    template = svc["spec"]["template"]
    annotations = template["metadata"].get("annotations", {})
    scale = {k.rsplit("/", 1)[1]: v for k, v in annotations.items() if k.startswith("autoscaling.knative.dev/")}
    for key, value in scale.items():
        if key not in ("minScale", "maxScale", "min-scale", "max-scale") or not str(value).isdigit():
            problems.append(f"annotation autoscaling.knative.dev/{key}: {value!r}")
    low, high = int(scale.get("minScale", 0)), int(scale.get("maxScale", 0))
    if high and high < low:
        problems.append(f"maxScale {high} < minScale {low}")
    spec = template["spec"]
    if not 0 <= spec.get("containerConcurrency", 0) <= 1000:
        problems.append("containerConcurrency outside 0..1000")
    if not 0 < spec.get("timeoutSeconds", 300) <= 600:  # default max-revision-timeout-seconds
        problems.append("timeoutSeconds outside 1..600")
    containers = spec["containers"]
    if len(containers) != 1:
        problems.append("fnserve runs one container")
    for c in containers:
        if c.get("name") == "queue-proxy":
            problems.append("container name queue-proxy is reserved")
        for env in c.get("env", []):
            if env["name"] in ("PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"):
                problems.append(f"env {env['name']} is reserved")
        ports = c.get("ports", [])
        if len(ports) > 1:
            problems.append("more than one port")
        for port in ports:
            if port.get("name", "") not in ("", "h2c", "http1"):
                problems.append(f"port name {port['name']!r}")
            if port["containerPort"] in (8012, 8013, 8022, 9090, 9091, 8008):
                problems.append(f"port {port['containerPort']} is reserved")
        for key in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(key)
            if probe is None:
                continue
            port = probe.get("httpGet", {}).get("port")
            if isinstance(port, str) and port != (ports[0].get("name") if ports else ""):
                problems.append(f"{key} port must match the container port")
            if probe.get("periodSeconds", 0) > 0 and (probe.get("timeoutSeconds", 1) < 1
                                                       or probe.get("failureThreshold", 1) < 1):
                problems.append(f"{key}: timeoutSeconds/failureThreshold below 1")
            if key == "readinessProbe" and not probe.get("periodSeconds") \
                    and ("timeoutSeconds" in probe or "failureThreshold" in probe):
                problems.append("readinessProbe: timeoutSeconds/failureThreshold without periodSeconds")
    return problems


def validate_k8s(obj: dict) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def consistency_problems(objs: dict[str, dict]) -> list[str]:
    """What the API server checks across fields (or users trip over across objects)."""
    dep, svc, hpa = objs["deployment.yaml"], objs["service.yaml"], objs["hpa.yaml"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    problems = []
    if not dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items():
        problems.append("deployment selector does not select its own pods")
    if not svc["spec"]["selector"].items() <= pod_labels.items():
        problems.append("service selector does not select the pods")
    port_names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    if any(p["targetPort"] not in port_names for p in svc["spec"]["ports"]):
        problems.append("service targetPort is not a container port")
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref["kind"], ref["name"]) != ("Deployment", dep["metadata"]["name"]):
        problems.append("hpa does not scale the deployment")
    if not 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]:
        problems.append("hpa replicas out of order")
    for name, obj in objs.items():
        if not DNS_1035.match(obj["metadata"]["name"]):
            problems.append(f"{name}: name is not a DNS-1035 label")
    return problems


def outputs(tmp_path: Path) -> dict[str, Path]:
    """Both examples and the per-function limits project, built."""
    built = {}
    for example in ("showcase", "edgeone"):
        shutil.copytree(EXAMPLES / example, tmp_path / example)
        built[example] = build(tmp_path / example)
    built["limits"] = build(limits_project(tmp_path / "limits"))
    return built


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return outputs(tmp_path_factory.mktemp("kube"))


@pytest.mark.parametrize("project", ["showcase", "edgeone", "limits"])
def test_knative_service_is_valid_against_the_crd_schema_and_webhook_rules(built, project):
    svc = knative_of(built[project])
    assert schema_errors(svc) == []
    assert knative_webhook_problems(svc) == []


@pytest.mark.parametrize("project", ["showcase", "edgeone", "limits"])
def test_kubernetes_objects_are_valid_against_the_api_schemas(built, project):
    objs = k8s_of(built[project])
    for obj in objs.values():
        validate_k8s(obj)
    assert consistency_problems(objs) == []


def test_the_knative_validation_rejects_what_the_api_server_would(built):
    """The checks bite: each mutation of a valid Service is reported."""
    good = knative_of(built["limits"])

    def mutated(path: str, value: Any) -> dict:
        doc = copy.deepcopy(good)
        *parents, last = path.split(".")
        node: Any = doc
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        node[int(last) if last.isdigit() else last] = value
        return doc

    c0 = "spec.template.spec.containers.0"
    assert schema_errors(mutated("spec.template.spec.containerConcurrency", "16"))
    assert schema_errors(mutated(f"{c0}.bogus", 1))
    assert schema_errors(mutated(f"{c0}.securityContext.runAsUser", "1000"))
    assert schema_errors(mutated("spec.template.metadata.annotations.x", 3))
    assert schema_errors(mutated(f"{c0}.ports.0.containerPort", "8080"))
    assert schema_errors(mutated("spec.template.spec.terminationGracePeriodSeconds", 30))
    assert knative_webhook_problems(mutated(f"{c0}.env", [{"name": "PORT", "value": "8080"}]))
    assert knative_webhook_problems(mutated(f"{c0}.ports.0.name", "http"))
    assert knative_webhook_problems(mutated("spec.template.spec.timeoutSeconds", 601))
    assert knative_webhook_problems(mutated(f"{c0}.readinessProbe.failureThreshold", 3))
    assert knative_webhook_problems(mutated("spec.template.metadata.annotations", {
        "autoscaling.knative.dev/minScale": "3", "autoscaling.knative.dev/maxScale": "2"}))


def test_the_kubernetes_validation_rejects_unknown_fields_and_wrong_types(built):
    dep = k8s_of(built["limits"])["deployment.yaml"]
    for mutate in (lambda d: d["spec"].__setitem__("replicaz", 1),
                   lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("image", 5),
                   lambda d: d["spec"]["template"]["spec"].__setitem__("terminationGracePeriodSeconds", "40")):
        doc = json.loads(json.dumps(dep))
        mutate(doc)
        with pytest.raises(kubernetes_validate.ValidationError):
            validate_k8s(doc)
