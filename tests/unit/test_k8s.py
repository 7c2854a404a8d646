"""The Kubernetes base (deploy/k8s/): every manifest is valid against Kubernetes' own schemas
(kubernetes-validate, strict), and names only commands, files, ports, routes, settings and
metrics that exist in this repository."""

from __future__ import annotations

import copy
import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from api.openapi import PATHS
from shared.datasets_file import read_file
from shared.settings import DEFAULT_API_PORT, DEFAULT_DASHBOARD_PORT, PREFIX, Settings
from tests.support.deployfiles import ROOT, assert_runnable

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.30.0"  # the oldest Kubernetes release still maintained by its providers
SETTINGS = {PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


def _kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def _resources() -> list[dict[str, Any]]:
    docs = []
    for name in _kustomization()["resources"]:
        docs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]
    return docs


def _of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in _resources() if d["kind"] == kind}


def _pods() -> list[dict[str, Any]]:
    return [d["spec"]["template"]["spec"] for d in _resources() if d["kind"] == "Deployment"]


def _containers() -> list[dict[str, Any]]:
    return [c for pod in _pods() for c in pod.get("initContainers", []) + pod["containers"]]


def _secret_keys() -> set[str]:
    """The keys of the Secret the operator creates (the base only documents it: it would
    overwrite the real one if it applied it)."""
    (secret,) = yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == "spillway-secrets"
    return set(secret["stringData"])


def _generated_settings() -> dict[str, str]:
    (literals,) = [g["literals"] for g in _kustomization()["configMapGenerator"] if g["name"] == "spillway-settings"]
    return dict(line.split("=", 1) for line in literals)


@pytest.mark.parametrize("doc", _resources(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schema(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_schema_check_refuses_a_misspelt_field():
    deployment = copy.deepcopy(next(iter(_of_kind("Deployment").values())))
    deployment["spec"]["template"]["spec"]["containers"][0]["comand"] = ["python"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_file_the_kustomization_names_exists_and_the_datasets_file_is_well_formed():
    kustomization = _kustomization()
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    files = [f for g in kustomization["configMapGenerator"] for f in g.get("files", [])]
    assert files == ["datasets.yml"] and read_file(K8S / "datasets.yml")  # the shape check of every process


def test_containers_run_existing_modules_with_existing_settings():
    generated = _generated_settings()
    secret = _secret_keys()
    assert "secret.example.yaml" not in _kustomization()["resources"]
    assert set(generated) <= SETTINGS and secret <= SETTINGS
    assert not set(generated) & set(secret)  # each setting in one place
    assert {"SPILLWAY_STATE_DATABASE_URL", "SPILLWAY_REDIS_URL", "SPILLWAY_S3_SECRET_ACCESS_KEY"} <= secret
    datasets_dir = str(Path(generated["SPILLWAY_DATASETS_FILE"]).parent)
    for container in _containers():
        assert_runnable(container["command"])
        refs = [ref for source in container["envFrom"] for ref in source.values()]
        assert {r["name"] for r in refs} == {"spillway-settings", "spillway-secrets"}
        for mount in container.get("volumeMounts", []):
            assert mount["mountPath"] == datasets_dir
        probe = container.get("livenessProbe", {}).get("exec")
        if probe:
            assert_runnable(probe["command"])
        assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    for pod in _pods():  # Pod Security "restricted", as the image's own user
        assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 1000
    assert "--uid 1000" in (ROOT / "deploy" / "docker" / "Dockerfile").read_text()
    migrating = [p for p in _pods() if any(c["command"][-1] == "shared.migrate" for c in p.get("initContainers", []))]
    assert len(migrating) == 3  # the API, the workers and the reconciler use the state database


def test_ports_and_probes_are_the_apps():
    api = _of_kind("Deployment")["spillway-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["ports"][0]["containerPort"] == DEFAULT_API_PORT
    assert api["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(DEFAULT_API_PORT)
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] in PATHS  # PATHS is exactly the app's routes (test_openapi.py)
    assert "/metrics" in PATHS
    (dashboard,) = _of_kind("Deployment")["spillway-dashboard"]["spec"]["template"]["spec"]["containers"]
    assert dashboard["ports"][0]["containerPort"] == DEFAULT_DASHBOARD_PORT
    for service in _of_kind("Service").values():
        target = service["spec"]["selector"]["app.kubernetes.io/name"]
        assert target in _of_kind("Deployment")


def test_workers_scale_on_a_metric_the_api_exports_and_leave_gracefully():
    hpa = _of_kind("HorizontalPodAutoscaler")["spillway-worker"]
    metric = hpa["spec"]["metrics"][0]["external"]["metric"]
    assert f'"{metric["name"]}"' in (ROOT / "api" / "metrics.py").read_text()
    assert metric["selector"]["matchLabels"] == {"queue": Settings().queue_chunks}
    assert hpa["spec"]["maxReplicas"] <= Settings().max_concurrent_reads + 2  # more would wait for a read slot
    assert "replicas" not in _of_kind("Deployment")["spillway-worker"]["spec"]  # the HPA owns the count
    worker = _of_kind("Deployment")["spillway-worker"]["spec"]["template"]["spec"]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["worker"]
    assert worker["terminationGracePeriodSeconds"] > int(compose["stop_grace_period"].rstrip("s"))
    pdb = _of_kind("PodDisruptionBudget")["spillway-worker"]
    assert pdb["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "spillway-worker"}


def test_the_base_renders_with_every_reference_resolved():
    """Every ConfigMap the containers name is generated by the kustomization; where kubectl is
    installed (this machine image has it; the project does not need it), its kustomize renders
    the base and every rendered object passes the schema check too."""
    generated = {g["name"] for g in _kustomization()["configMapGenerator"]}
    named = {v["configMap"]["name"] for pod in _pods() for v in pod.get("volumes", [])}
    named |= {s["configMapRef"]["name"] for c in _containers() for s in c["envFrom"] if "configMapRef" in s}
    assert named == generated
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        rendered = subprocess.run(
            [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=True
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        assert sorted(d["kind"] for d in docs).count("ConfigMap") == len(generated)
        for doc in docs:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
