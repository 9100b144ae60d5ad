"""Checks on docker-compose.yml, its overlay and .env.example, by parsing them."""

from __future__ import annotations

import re

import pytest
import yaml
from gatehouse.common.config import SECRET_VARIABLES

GATEHOUSE_COMPONENTS = ("gateway", "identity", "otp", "mailer")
BACKING_SERVICES = ("postgres", "redis", "rabbitmq", "mailpit")
# One-shot containers: compose waits for their exit, not for a health state.
ONE_SHOT_SERVICES = ("migrate", "agentctl")
REQUIRED_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+):\?")
ANY_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)")


def test_compose_has_every_service(compose):
    services = set(compose["services"])
    expected = {*GATEHOUSE_COMPONENTS, *BACKING_SERVICES, *ONE_SHOT_SERVICES}
    assert services == expected


@pytest.mark.parametrize("name", GATEHOUSE_COMPONENTS + BACKING_SERVICES)
def test_compose_service_has_healthcheck(compose, name):
    healthcheck = compose["services"][name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False)
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")


@pytest.mark.parametrize("name", ("gateway", "identity", "otp"))
def test_compose_http_healthcheck_calls_healthz(compose, name):
    test = compose["services"][name]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urllib.request" in test[3]
    assert "/healthz" in test[3]


def test_compose_healthcheck_ports_match_services(compose):
    ports = {"gateway": 8080, "identity": 8081, "otp": 8082}
    for name, port in ports.items():
        service = compose["services"][name]
        assert f"127.0.0.1:{port}/healthz" in service["healthcheck"]["test"][3]
        port_variable = f"{name.upper()}_PORT"
        assert service["environment"][port_variable] == str(port)


def test_compose_only_gateway_publishes(compose):
    publishing = sorted(
        name for name, service in compose["services"].items() if service.get("ports")
    )
    assert publishing == ["gateway"]


def test_compose_gateway_publishes_loopback_by_default(compose):
    (mapping,) = compose["services"]["gateway"]["ports"]
    assert mapping == "${GATEWAY_PUBLISH:-127.0.0.1:8080}:8080"


def test_compose_otp_is_scalable(compose):
    otp = compose["services"]["otp"]
    assert "container_name" not in otp
    assert "ports" not in otp
    assert otp["environment"]["OTP_URLS"] == "http://otp:8082"


def test_compose_no_container_names(compose):
    named = [
        name for name, svc in compose["services"].items() if "container_name" in svc
    ]
    assert named == []


def test_compose_migrate_gates_services(compose):
    services = compose["services"]
    assert (
        services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    )
    assert services["migrate"]["restart"] == "no"
    for name in ("identity", "otp"):
        depends_on = services[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert depends_on["rabbitmq"]["condition"] == "service_healthy"


def test_compose_gateway_waits_for_services(compose):
    depends_on = compose["services"]["gateway"]["depends_on"]
    for name in ("identity", "otp", "redis"):
        assert depends_on[name]["condition"] == "service_healthy"


def test_compose_mailer_waits_for_broker(compose):
    depends_on = compose["services"]["mailer"]["depends_on"]
    assert depends_on["rabbitmq"]["condition"] == "service_healthy"
    assert depends_on["mailpit"]["condition"] == "service_healthy"


def test_compose_dependencies_exist(compose):
    services = compose["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"


@pytest.mark.parametrize("name", GATEHOUSE_COMPONENTS + ONE_SHOT_SERVICES)
def test_compose_component_runs_production(compose, name):
    environment = compose["services"][name]["environment"]
    assert environment["GATEHOUSE_ENV"] == "production"
    for variable in SECRET_VARIABLES:
        assert variable in environment, f"{name} lacks {variable}"
        assert f"${{{variable}:?" in environment[variable]


@pytest.mark.parametrize("name", GATEHOUSE_COMPONENTS + ONE_SHOT_SERVICES)
def test_compose_component_names_itself(compose, name):
    environment = compose["services"][name]["environment"]
    assert environment["GATEHOUSE_COMPONENT"] == name


def test_compose_commands(compose):
    services = compose["services"]
    for name in ("gateway", "identity", "otp"):
        app = f"gatehouse.{name}.app:create_app()"
        assert services[name]["command"] == ["gunicorn", app]
    assert services["mailer"]["command"] == ["gatehouse-mailer"]
    migrate = ["python", "-m", "gatehouse.common.stack", "migrate"]
    assert services["migrate"]["command"] == migrate


def test_compose_database_urls_only_where_needed(compose):
    services = compose["services"]
    for name in ("identity", "migrate", "agentctl"):
        assert "IDENTITY_DATABASE_URL" in services[name]["environment"]
    for name in ("otp", "migrate", "agentctl"):
        assert "OTP_DATABASE_URL" in services[name]["environment"]
    for name in ("gateway", "mailer"):
        environment = services[name]["environment"]
        assert "IDENTITY_DATABASE_URL" not in environment
        assert "OTP_DATABASE_URL" not in environment


def test_compose_database_urls_use_psycopg(compose):
    environment = compose["services"]["migrate"]["environment"]
    for variable in ("IDENTITY_DATABASE_URL", "OTP_DATABASE_URL"):
        assert environment[variable].startswith("postgresql+psycopg://")
        assert "@postgres:5432/" in environment[variable]


def test_compose_broker_password_only_where_needed(compose):
    services = compose["services"]
    for name in ("identity", "otp", "mailer", "agentctl"):
        assert "AMQP_URL" in services[name]["environment"]
    for name in ("gateway", "migrate"):
        assert "AMQP_URL" not in services[name]["environment"]


# Each caller gets only its own private key; only the called services get the
# callers' public keys.
SERVICE_KEY_VARIABLES = {
    "gateway": {"GATEHOUSE_GATEWAY_SIGNING_KEY"},
    "identity": {"GATEHOUSE_IDENTITY_SIGNING_KEY", "GATEHOUSE_SERVICE_PUBLIC_KEYS"},
    "otp": {"GATEHOUSE_SERVICE_PUBLIC_KEYS"},
}
ALL_SERVICE_KEY_VARIABLES = set().union(*SERVICE_KEY_VARIABLES.values())


def test_compose_service_keys_only_where_needed(compose):
    for name, service in compose["services"].items():
        present = ALL_SERVICE_KEY_VARIABLES & set(service.get("environment") or {})
        assert present == SERVICE_KEY_VARIABLES.get(name, set()), name


def test_compose_has_no_shared_service_token(compose):
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        assert "GATEHOUSE_SERVICE_TOKEN" not in environment, name


def test_compose_data_volume_shared(compose):
    for name in ("otp", "mailer", "agentctl"):
        volumes = compose["services"][name]["volumes"]
        assert "gatehouse-data:/var/lib/gatehouse" in volumes


def test_compose_redis_appends_to_volume(compose):
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "redis-data:/data" in redis["volumes"]
    assert "redis-data" in compose["volumes"]


def test_compose_backing_data_on_volumes(compose):
    services = compose["services"]
    assert "postgres-data:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "rabbitmq-data:/var/lib/rabbitmq" in services["rabbitmq"]["volumes"]
    assert services["rabbitmq"]["hostname"] == "rabbitmq"


def test_compose_components_hardened(compose):
    for name in GATEHOUSE_COMPONENTS + ONE_SHOT_SERVICES:
        service = compose["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"


def test_compose_agentctl_needs_profile(compose):
    assert compose["services"]["agentctl"]["profiles"] == ["tools"]


def test_env_example_defines_required_variables(checkout_dir):
    compose_text = (checkout_dir / "docker-compose.yml").read_text()
    required = set(REQUIRED_VARIABLE.findall(compose_text))
    defined = _env_example(checkout_dir)
    assert required - set(defined) == set()
    assert set(SECRET_VARIABLES) <= required


def test_env_example_covers_every_variable(checkout_dir):
    text = (checkout_dir / "docker-compose.yml").read_text()
    text += (checkout_dir / "deploy" / "compose.mailpit-ui.yml").read_text()
    used = set(ANY_VARIABLE.findall(text))
    defined = set(_env_example(checkout_dir))
    assert used - defined == set()


def test_env_example_leaves_secrets_empty(checkout_dir):
    defined = _env_example(checkout_dir)
    compose_text = (checkout_dir / "docker-compose.yml").read_text()
    for variable in REQUIRED_VARIABLE.findall(compose_text):
        assert defined[variable] == "", f"{variable} has a value in .env.example"


def test_env_example_explains_generation(checkout_dir):
    lines = (checkout_dir / ".env.example").read_text().splitlines()
    compose_text = (checkout_dir / "docker-compose.yml").read_text()
    for variable in set(REQUIRED_VARIABLE.findall(compose_text)):
        index = next(i for i, line in enumerate(lines) if line == f"{variable}=")
        generators = ("openssl rand", "gatehouse.common.servicekeys generate")
        assert any(generator in lines[index - 1] for generator in generators), (
            f"no generator above {variable}"
        )


def test_mailpit_overlay_publishes_loopback(checkout_dir):
    overlay = yaml.safe_load(
        (checkout_dir / "deploy/compose.mailpit-ui.yml").read_text()
    )
    assert list(overlay["services"]) == ["mailpit"]
    assert overlay["services"]["mailpit"]["ports"] == [
        "${MAILPIT_PUBLISH:-127.0.0.1:8025}:8025"
    ]


def _env_example(checkout_dir) -> dict[str, str]:
    values = {}
    for line in (checkout_dir / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_compose_environment_values_are_strings(compose):
    # YAML 1.1 readers turn unquoted on, off, yes and numbers into other types.
    for name, service in compose["services"].items():
        for variable, value in service.get("environment", {}).items():
            assert isinstance(value, str), f"{name}: {variable}={value!r}"
