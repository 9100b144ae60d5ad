"""Checks on the kustomize base in deploy/kubernetes, offline."""

from __future__ import annotations

import copy
import shutil
import subprocess

import kubernetes_validate
import pytest
import yaml
from gatehouse.common.config import SECRET_VARIABLES

# The oldest Kubernetes release still in upstream support when this was written;
# kubernetes-validate ships the JSON schemas of each release inside the package.
KUBERNETES_VERSION = "1.31"
HTTP_COMPONENTS = {"gateway": 8080, "identity": 8081, "otp": 8082}
BROKER_PORTS = {5672, 5671}


def _by_kind(documents, kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for _, doc in documents if doc["kind"] == kind}


def _pod_specs(documents) -> dict[str, dict]:
    specs = {}
    for _, document in documents:
        if document["kind"] in ("Deployment", "Job"):
            specs[document["metadata"]["name"]] = document["spec"]["template"]["spec"]
    return specs


def _configmap(documents) -> dict[str, str]:
    return _by_kind(documents, "ConfigMap")["gatehouse-config"]["data"]


def test_manifests_validate_against_schema(kubernetes_documents):
    assert kubernetes_documents
    for filename, document in kubernetes_documents:
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{filename} {document['kind']}: {path}: {error.message}")


def test_schema_validation_rejects_typo(kubernetes_documents):
    # Proves the validator runs with the strict schemas: a misspelt field fails.
    deployment = next(d for _, d in kubernetes_documents if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest(checkout_dir):
    directory = checkout_dir / "deploy" / "kubernetes"
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    present = {
        path.name
        for path in directory.iterdir()
        if path.suffix in (".yaml", ".yml") and path.name != "kustomization.yaml"
    }
    listed = kustomization["resources"]
    assert sorted(listed) == sorted(present)
    assert len(listed) == len(set(listed))


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_renders(checkout_dir, kubernetes_documents):
    result = subprocess.run(
        ["kubectl", "kustomize", str(checkout_dir / "deploy" / "kubernetes")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rendered = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(rendered) == len(kubernetes_documents)


def test_deployments_exist(kubernetes_documents):
    deployments = _by_kind(kubernetes_documents, "Deployment")
    for component in ("gateway", "identity", "otp", "mailer"):
        assert f"gatehouse-{component}" in deployments


def test_services_for_http_components(kubernetes_documents):
    services = _by_kind(kubernetes_documents, "Service")
    assert sorted(services) == sorted(f"gatehouse-{c}" for c in HTTP_COMPONENTS)
    for component, port in HTTP_COMPONENTS.items():
        service = services[f"gatehouse-{component}"]
        assert service["spec"]["ports"][0]["port"] == port
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == component


def test_configmap_urls_match_services(kubernetes_documents):
    data = _configmap(kubernetes_documents)
    assert data["IDENTITY_URL"] == "http://gatehouse-identity:8081"
    assert data["OTP_URLS"] == "http://gatehouse-otp:8082"
    assert data["GATEHOUSE_ENV"] == "production"


def test_pods_have_production_secrets(kubernetes_documents):
    configmap = _configmap(kubernetes_documents)
    for name, spec in _pod_specs(kubernetes_documents).items():
        for container in spec["containers"]:
            names = {item["name"] for item in container.get("env", [])}
            sources = [ref["configMapRef"]["name"] for ref in container["envFrom"]]
            assert sources == ["gatehouse-config"], name
            assert configmap["GATEHOUSE_ENV"] == "production"
            for variable in SECRET_VARIABLES:
                assert variable in names, f"{name} lacks {variable}"


def test_secrets_come_from_secret_refs(kubernetes_documents):
    configmap = _configmap(kubernetes_documents)
    for variable in SECRET_VARIABLES:
        assert variable not in configmap
    for name, spec in _pod_specs(kubernetes_documents).items():
        for container in spec["containers"]:
            for item in container["env"]:
                if "valueFrom" in item:
                    reference = item["valueFrom"]["secretKeyRef"]
                    assert reference["name"] == "gatehouse-secrets", name
                    assert reference["key"] == item["name"], name


# Each caller gets only its own private key; only the called services get the
# callers' public keys.
SERVICE_KEY_VARIABLES = {
    "gatehouse-gateway": {"GATEHOUSE_GATEWAY_SIGNING_KEY"},
    "gatehouse-identity": {
        "GATEHOUSE_IDENTITY_SIGNING_KEY",
        "GATEHOUSE_SERVICE_PUBLIC_KEYS",
    },
    "gatehouse-otp": {"GATEHOUSE_SERVICE_PUBLIC_KEYS"},
}


def test_service_keys_only_where_needed(kubernetes_documents):
    every_key = set().union(*SERVICE_KEY_VARIABLES.values())
    specs = _pod_specs(kubernetes_documents)
    assert set(SERVICE_KEY_VARIABLES) <= set(specs)
    for name, spec in specs.items():
        for container in spec["containers"]:
            names = {item["name"] for item in container.get("env", [])}
            assert names & every_key == SERVICE_KEY_VARIABLES.get(name, set()), name
            assert "GATEHOUSE_SERVICE_TOKEN" not in names, name


def test_pods_name_their_component(kubernetes_documents):
    for _, document in kubernetes_documents:
        if document["kind"] not in ("Deployment", "Job"):
            continue
        component = document["metadata"]["labels"]["app.kubernetes.io/component"]
        container = document["spec"]["template"]["spec"]["containers"][0]
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["GATEHOUSE_COMPONENT"] == component


def test_database_urls_only_where_needed(kubernetes_documents):
    expected = {
        "gatehouse-gateway": set(),
        "gatehouse-identity": {"IDENTITY_DATABASE_URL"},
        "gatehouse-otp": {"OTP_DATABASE_URL"},
        "gatehouse-mailer": set(),
        "gatehouse-agentctl": {"IDENTITY_DATABASE_URL", "OTP_DATABASE_URL"},
        "gatehouse-migrate": {"IDENTITY_DATABASE_URL", "OTP_DATABASE_URL"},
    }
    for name, spec in _pod_specs(kubernetes_documents).items():
        names = {item["name"] for item in spec["containers"][0]["env"]}
        assert names & {"IDENTITY_DATABASE_URL", "OTP_DATABASE_URL"} == expected[name]


def test_pod_security_contexts(kubernetes_documents):
    for name, spec in _pod_specs(kubernetes_documents).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name


def test_containers_request_resources(kubernetes_documents):
    for name, spec in _pod_specs(kubernetes_documents).items():
        for container in spec["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def test_http_probes(kubernetes_documents):
    deployments = _by_kind(kubernetes_documents, "Deployment")
    for component, port in HTTP_COMPONENTS.items():
        spec = deployments[f"gatehouse-{component}"]["spec"]["template"]["spec"]
        container = spec["containers"][0]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["port"] == "http"


def test_mailer_probe_checks_heartbeat(kubernetes_documents):
    deployment = _by_kind(kubernetes_documents, "Deployment")["gatehouse-mailer"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["gatehouse-mailer"]
    probe = container["readinessProbe"]["exec"]["command"]
    assert probe == ["gatehouse-mailer", "--check"]


def test_commands(kubernetes_documents):
    deployments = _by_kind(kubernetes_documents, "Deployment")
    for component in HTTP_COMPONENTS:
        container = deployments[f"gatehouse-{component}"]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["command"] == [
            "gunicorn",
            f"gatehouse.{component}.app:create_app()",
        ]
    job = _by_kind(kubernetes_documents, "Job")["gatehouse-migrate"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "gatehouse.common.stack", "migrate"]


def test_autoscalers_for_otp_and_gateway(kubernetes_documents):
    autoscalers = _by_kind(kubernetes_documents, "HorizontalPodAutoscaler")
    deployments = _by_kind(kubernetes_documents, "Deployment")
    targets = sorted(
        hpa["spec"]["scaleTargetRef"]["name"] for hpa in autoscalers.values()
    )
    assert targets == ["gatehouse-gateway", "gatehouse-otp"]
    for target in targets:
        assert target in deployments


def test_disruption_budgets_match_deployments(kubernetes_documents):
    budgets = _by_kind(kubernetes_documents, "PodDisruptionBudget")
    deployments = _by_kind(kubernetes_documents, "Deployment")
    covered = set()
    for budget in budgets.values():
        selector = budget["spec"]["selector"]["matchLabels"]
        for name, deployment in deployments.items():
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            if selector.items() <= labels.items():
                covered.add(name)
    assert covered == set(deployments) - {"gatehouse-agentctl"}


def test_selectors_match_templates(kubernetes_documents):
    for name, deployment in _by_kind(kubernetes_documents, "Deployment").items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), name
        assert labels["app.kubernetes.io/part-of"] == "gatehouse", name


def _policy_for(policies, component: str) -> dict:
    return policies[f"gatehouse-{component}"]


def _egress_ports(policy: dict) -> set[int]:
    return {
        port["port"]
        for rule in policy["spec"].get("egress", [])
        for port in rule.get("ports", [])
    }


def test_default_deny_covers_every_pod(kubernetes_documents):
    policies = _by_kind(kubernetes_documents, "NetworkPolicy")
    deny = policies["gatehouse-default-deny"]["spec"]
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/part-of": "gatehouse"
    }
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny
    assert "egress" not in deny


@pytest.mark.parametrize("component", ["identity", "otp"])
def test_only_gateway_reaches(kubernetes_documents, component):
    policy = _policy_for(_by_kind(kubernetes_documents, "NetworkPolicy"), component)
    (rule,) = policy["spec"]["ingress"]
    (source,) = rule["from"]
    assert (
        source["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "gateway"
    )
    assert rule["ports"] == [{"protocol": "TCP", "port": HTTP_COMPONENTS[component]}]


def test_only_queue_users_reach_broker(kubernetes_documents):
    policies = _by_kind(kubernetes_documents, "NetworkPolicy")
    with_broker = sorted(
        name
        for name, policy in policies.items()
        if _egress_ports(policy) & BROKER_PORTS
    )
    expected = [
        "gatehouse-agentctl",
        "gatehouse-identity",
        "gatehouse-mailer",
        "gatehouse-otp",
    ]
    assert with_broker == expected


def test_every_pod_has_a_policy(kubernetes_documents):
    policies = _by_kind(kubernetes_documents, "NetworkPolicy")
    for name in _pod_specs(kubernetes_documents):
        assert name in policies, f"{name} has no NetworkPolicy"
        selector = policies[name]["spec"]["podSelector"]["matchLabels"]
        assert selector["app.kubernetes.io/component"] == name.removeprefix(
            "gatehouse-"
        )


def test_mailer_and_jobs_accept_nothing(kubernetes_documents):
    policies = _by_kind(kubernetes_documents, "NetworkPolicy")
    for component in ("mailer", "migrate", "agentctl"):
        assert policies[f"gatehouse-{component}"]["spec"]["ingress"] == []


def test_data_volume_mounted_where_needed(kubernetes_documents):
    for name, spec in _pod_specs(kubernetes_documents).items():
        claims = {
            volume["persistentVolumeClaim"]["claimName"]
            for volume in spec["volumes"]
            if "persistentVolumeClaim" in volume
        }
        expected = (
            {"gatehouse-data"}
            if name in ("gatehouse-otp", "gatehouse-mailer", "gatehouse-agentctl")
            else set()
        )
        assert claims == expected, name


def test_secret_keys_documented(checkout_dir, kubernetes_documents):
    guide = (checkout_dir / "docs" / "deploy.md").read_text()
    for _, spec in _pod_specs(kubernetes_documents).items():
        for item in spec["containers"][0]["env"]:
            if "valueFrom" in item:
                assert f"`{item['name']}`" in guide, f"{item['name']} is undocumented"
