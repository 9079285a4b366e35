"""docker/k8s: every object against the Kubernetes schemas (offline), then what it must say."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from tests.docker.conftest import (
    K8S,
    container_env,
    k8s_documents,
    k8s_object,
    parse_dockerfile,
)

# A release the installed kubernetes-validate ships schemas for; strict rejects unknown fields.
KUBERNETES_VERSION = "1.33.0"


def test_schema_version_is_shipped():
    assert KUBERNETES_VERSION in all_versions()


@pytest.mark.parametrize(
    "document",
    [doc for docs in k8s_documents().values() for doc in docs],
    ids=lambda doc: f"{doc['kind']}/{doc['metadata']['name']}",
)
def test_manifest_validates_against_the_kubernetes_schema(document: dict[str, Any]):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_mistakes():
    broken = copy.deepcopy(k8s_object("Deployment"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbe"]["periodSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_in_the_kustomization():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(k8s_documents())


@pytest.fixture(scope="module")
def deployment() -> dict[str, Any]:
    return k8s_object("Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_probes(container: dict[str, Any]):
    (port,) = container["ports"]
    assert port["containerPort"] == int(container_env(container)["PORT"]) == 8000
    probes = {key: container[key] for key in ("livenessProbe", "readinessProbe", "startupProbe")}
    for probe in probes.values():
        assert probe["httpGet"]["port"] in (port["name"], port["containerPort"])
        assert probe.get("timeoutSeconds", 1) >= 1
    assert probes["livenessProbe"]["httpGet"]["path"] == "/health"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert probes["startupProbe"]["httpGet"]["path"] == "/ready"
    startup = probes["startupProbe"]
    # Model load + warm-up measurement happen before the port opens; give them minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 180


def test_one_gpu_and_bounded_cpu_and_memory(container: dict[str, Any]):
    resources = container["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"]
    assert container_env(container)["CELLCOUNT_DEVICE"] == "cuda"


def test_locked_down_pod(deployment: dict[str, Any], container: dict[str, Any]):
    pod = deployment["spec"]["template"]["spec"]
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and pod["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    uid = parse_dockerfile().final.values("USER")[-1].split(":")[0]
    assert security["runAsUser"] == int(uid), "the same user the image declares"
    (tmp,) = [mount for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]
    (volume,) = [volume for volume in pod["volumes"] if volume["name"] == tmp["name"]]
    assert "emptyDir" in volume


def test_grace_period_outlasts_the_drain(deployment: dict[str, Any], container: dict[str, Any]):
    pod = deployment["spec"]["template"]["spec"]
    graceful = int(container_env(container)["GRACEFUL_TIMEOUT"])
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > graceful + int(pre_stop[1])
    timeout = float(container_env(container).get("CELLCOUNT_REQUEST_TIMEOUT_S", 60))
    assert graceful > timeout  # every admitted request ends (its count or its 504) in the drain


def test_image_settings_match_the_dockerfile(container: dict[str, Any]):
    image_env = parse_dockerfile().final.env()
    env = container_env(container)
    assert env["CELLCOUNT_CHECKPOINT"] == image_env["CELLCOUNT_CHECKPOINT"]
    assert env["HOST"] == "0.0.0.0"
    assert container["image"].endswith("-cuda")


def test_service_autoscaler_and_budget_select_the_deployment(deployment: dict[str, Any]):
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # The autoscaler owns the replica count.
    assert "replicas" not in deployment["spec"]

    service = k8s_object("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"

    hpa = k8s_object("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"]["type"] == "Utilization"

    pdb = k8s_object("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["minReplicas"] > pdb["spec"]["minAvailable"], "a drain can always proceed"
