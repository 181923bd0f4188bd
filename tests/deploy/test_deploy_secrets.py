"""Secrets and least privilege in deploy/: each compose service and each Kubernetes pod gets
only the secrets it needs (the salt only the workers, the migration's owner URL only the
migration), usqa never connects to PostgreSQL as the superuser, the metrics endpoint listens
where the deployment says, the Kubernetes copy of the PostgreSQL init files is the original,
and NetworkPolicies let through only what the stack uses."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from tests.deploy.deploy_files import DEPLOY, K8S, load_yaml_docs

COMPOSE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "usqa.env.example"
BASE = K8S / "base"
SECRETS = {
    "POSTGRES_PASSWORD",
    "POSTGRES_OWNER_PASSWORD",
    "POSTGRES_APP_PASSWORD",
    "POSTGRES_READER_PASSWORD",
    "REDIS_PASSWORD",
    "USQA_DATABASE_URL",
    "MIGRATE_DATABASE_URL",
    "USQA_BROKER_URL",
    "USQA_PSEUDONYM_SALT",
    "FLOWER_BASIC_AUTH",
    "GF_SECURITY_ADMIN_PASSWORD",
}
DB = {"USQA_DATABASE_URL"}
BROKER = {"USQA_BROKER_URL"}
NEEDS = {  # service or pod -> the secrets it may see
    "redis": {"REDIS_PASSWORD"},
    "postgres": {
        "POSTGRES_PASSWORD",
        "POSTGRES_OWNER_PASSWORD",
        "POSTGRES_APP_PASSWORD",
        "POSTGRES_READER_PASSWORD",
    },
    "migrate": {"MIGRATE_DATABASE_URL"},
    "ingest": DB | BROKER,
    "listen": DB | BROKER,
    "worker": DB | BROKER | {"USQA_PSEUDONYM_SALT"},
    "web": DB,
    "flower": BROKER | {"FLOWER_BASIC_AUTH"},
    "prometheus": set(),
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD", "POSTGRES_READER_PASSWORD"},
}


def _env_example() -> dict[str, str]:
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {k: v for k, v in pairs}


def test_each_compose_service_gets_only_its_secrets() -> None:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert set(NEEDS) == set(services)
    for name, svc in services.items():
        assert "env_file" not in svc, f"{name} would get every password of usqa.env"
        env = svc.get("environment") or {}
        assert isinstance(env, dict), name
        used = {v for value in env.values() for v in re.findall(r"\$\{(\w+)", str(value))}
        assert used & SECRETS == NEEDS[name], f"compose {name}: {sorted(used & SECRETS)}"
    migrate = services["migrate"]["environment"]["USQA_DATABASE_URL"]
    assert migrate.startswith("${MIGRATE_DATABASE_URL:?"), "the migration connects as owner"


def test_usqa_never_connects_as_the_superuser() -> None:
    env = _env_example()
    superuser = env["POSTGRES_USER"]
    assert superuser == "postgres"
    app, owner = make_url(env["USQA_DATABASE_URL"]), make_url(env["MIGRATE_DATABASE_URL"])
    assert (app.username, owner.username) == ("usqa_app", "usqa_owner")
    for url in (env["USQA_DATABASE_URL"], env["MIGRATE_DATABASE_URL"]):
        assert "CHANGE-ME" in url
    (secret,) = load_yaml_docs(K8S / "secret.example.yaml")
    data = secret["stringData"]
    assert data["POSTGRES_USER"] == "postgres"
    assert make_url(data["USQA_DATABASE_URL"]).username == "usqa_app"
    assert make_url(data["MIGRATE_DATABASE_URL"]).username == "usqa_owner"
    assert "POSTGRES_OWNER_PASSWORD" in data and "POSTGRES_APP_PASSWORD" in data
    roles_sql = (DEPLOY / "postgres" / "roles.sql").read_text(encoding="utf-8")
    for role in ("usqa_owner", "usqa_app", "usqa_reader"):
        assert re.search(rf"ALTER ROLE {role} WITH LOGIN NOSUPERUSER", roles_sql), role
    # dashboards get the qa_* views one by one, never every table nor future tables
    statements = " ".join(roles_sql.split()).split(";")
    for statement in statements:
        if "usqa_dashboard" in statement or "usqa_reader" in statement:
            assert "ALL TABLES" not in statement and "DEFAULT PRIVILEGES" not in statement


def test_compose_mounts_the_role_script_but_not_the_sql_as_an_init_file() -> None:
    postgres = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["postgres"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in postgres["volumes"]}
    assert mounts["/docker-entrypoint-initdb.d/10-usqa-roles.sh"] == "./postgres/10-usqa-roles.sh"
    assert mounts["/usr/local/share/usqa/roles.sql"] == "./postgres/roles.sql"
    # the image would run a .sql in initdb.d by itself, without the passwords
    assert not any(
        m.startswith("/docker-entrypoint-initdb.d/") and m.endswith(".sql") for m in mounts
    )


def _base() -> dict[tuple[str, str], dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    docs = [d for name in kustomization["resources"] for d in load_yaml_docs(BASE / name)]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod_secrets(doc: dict[str, Any]) -> set[str]:
    spec = doc["spec"]["template"]["spec"]
    keys = set()
    for container in spec["containers"] + spec.get("initContainers", []):
        assert not any("secretRef" in s for s in container.get("envFrom", [])), "whole Secret"
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                keys.add(ref["key"])
    return keys


@pytest.mark.parametrize(
    ("kind", "name", "component"),
    [
        ("StatefulSet", "usqa-postgres", "postgres"),
        ("StatefulSet", "usqa-redis", "redis"),
        ("Job", "usqa-db-upgrade", "migrate"),
        ("Deployment", "usqa-ingest", "ingest"),
        ("Deployment", "usqa-listen", "listen"),
        ("Deployment", "usqa-worker", "worker"),
        ("Deployment", "usqa-flower", "flower"),
    ],
)
def test_each_pod_gets_only_its_secrets(kind: str, name: str, component: str) -> None:
    got = _pod_secrets(_base()[(kind, name)]) & SECRETS
    assert got == NEEDS[component], f"{kind} {name}: {sorted(got)}"


def test_migration_job_connects_as_owner() -> None:
    job = _base()[("Job", "usqa-db-upgrade")]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]}
    assert env == {"USQA_DATABASE_URL": "MIGRATE_DATABASE_URL"}


def test_kubernetes_init_files_are_the_originals() -> None:
    docs = _base()
    data = docs[("ConfigMap", "usqa-postgres-init")]["data"]
    for name in ("10-usqa-roles.sh", "roles.sql"):
        original = (DEPLOY / "postgres" / name).read_text(encoding="utf-8")
        assert data[name] == original, f"postgres-init.yaml {name} differs from deploy/postgres"
    spec = docs[("StatefulSet", "usqa-postgres")]["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    mounts = {m["mountPath"]: m.get("subPath") for m in container["volumeMounts"]}
    assert mounts["/docker-entrypoint-initdb.d/10-usqa-roles.sh"] == "10-usqa-roles.sh"
    assert mounts["/usr/local/share/usqa/roles.sql"] == "roles.sql"


def test_metrics_listen_where_prometheus_can_reach_them() -> None:
    config = _base()[("ConfigMap", "usqa-config")]["data"]
    assert config["USQA_METRICS_ADDRESS"] == "0.0.0.0"
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    for name in ("migrate", "ingest", "worker"):
        assert services[name]["environment"]["USQA_METRICS_ADDRESS"] == "0.0.0.0", name
        assert "ports" not in services[name], f"{name} publishes a port"
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert "USQA_METRICS_ADDRESS=0.0.0.0" in dockerfile
    # systemd VMs keep the default, this machine only, unless usqa.env says otherwise
    assert _env_example()["USQA_METRICS_ADDRESS"] == "127.0.0.1"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        assert expr["operator"] == "In"
        if labels.get(expr["key"]) not in expr["values"]:
            return False
    return True


def _pods() -> dict[str, dict[str, str]]:
    return {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"]["template"]["metadata"][
            "labels"
        ]
        for d in _base().values()
        if d["kind"] in {"Deployment", "StatefulSet", "Job"}
    }


def _allowed(component: str, port: int) -> set[str]:
    """Components (and namespaces) that the policies let connect to ``component``:port."""
    pods = _pods()
    target = pods[component]
    allowed: set[str] = set()
    for doc in _base().values():
        if doc["kind"] != "NetworkPolicy" or "Ingress" not in doc["spec"]["policyTypes"]:
            continue
        if not _selects(doc["spec"]["podSelector"], target):
            continue
        for rule in doc["spec"].get("ingress", []):
            if port not in {p["port"] for p in rule.get("ports", [])}:
                continue
            for peer in rule["from"]:
                if "podSelector" in peer:
                    allowed |= {c for c, lab in pods.items() if _selects(peer["podSelector"], lab)}
                else:
                    allowed.add(
                        "ns:"
                        + peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                    )
    return allowed


def test_network_policies_allow_only_what_the_stack_uses() -> None:
    docs = _base()
    deny = docs[("NetworkPolicy", "usqa-default-deny-ingress")]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny
    assert _allowed("postgres", 5432) == {"ingest", "listen", "worker", "web", "migrate"}
    assert _allowed("web", 8080) == {"ns:ingress-nginx"}
    assert _allowed("redis", 6379) == {"ingest", "listen", "worker", "flower", "ns:keda"}
    for component in ("ingest", "listen", "worker"):
        assert _allowed(component, 9400) == {"ns:monitoring"}, component
    for component in ("flower", "migrate"):
        assert _allowed(component, 5555) == set() and _allowed(component, 9400) == set()
    egress = docs[("NetworkPolicy", "usqa-app-egress")]["spec"]
    pods = _pods()
    assert {c for c, lab in pods.items() if _selects(egress["podSelector"], lab)} == {
        "ingest",
        "listen",
        "worker",
        "web",
        "migrate",
    }
    ports = {(p["protocol"], p["port"]) for rule in egress["egress"] for p in rule["ports"]}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 5432), ("TCP", 6379)}
    assert all("to" not in rule for rule in egress["egress"])  # a site's own PostgreSQL works
