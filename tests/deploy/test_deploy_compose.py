"""docker-compose.yml: a structural check here (no Docker engine), plus `docker compose config`
wherever the compose client is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.deploy_files import (
    DEPLOY,
    REPO,
    assert_usqa_command,
    interpolate_defaults,
    setting_variables,
)

COMPOSE = DEPLOY / "docker-compose.yml"
GPU = DEPLOY / "docker-compose.gpu.yml"
ENV_EXAMPLE = DEPLOY / "usqa.env.example"
USQA_SERVICES = ("migrate", "ingest", "listen", "worker", "web")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"usqa.env.example: not KEY=value: {line!r}"
            out[key.strip()] = value
    return out


def test_every_service_is_there(services: dict[str, Any]) -> None:
    assert {"redis", "postgres", "migrate", "ingest", "worker", "flower"} <= set(services)


def test_redis_keeps_the_queue_on_disk_and_never_evicts(services: dict[str, Any]) -> None:
    redis = services["redis"]
    conf_mount = next(
        v for v in redis["volumes"] if v.endswith(":/usr/local/etc/redis/redis.conf:ro")
    )
    conf_path = (DEPLOY / conf_mount.split(":")[0]).resolve()
    settings = {}
    for line in conf_path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition(" ")
            settings[key] = value.strip()
    assert settings["appendonly"] == "yes"
    assert settings["appendfsync"] == "everysec"
    assert settings["maxmemory-policy"] == "noeviction"
    command = " ".join(redis["command"])
    assert "/usr/local/etc/redis/redis.conf" in command and "--requirepass" in command
    assert any(v.startswith("redis-data:") for v in redis["volumes"])
    assert "healthcheck" in redis


def test_postgres_has_a_named_volume(services: dict[str, Any], compose: dict[str, Any]) -> None:
    volumes = services["postgres"]["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in volumes
    assert "postgres-data" in compose["volumes"]
    assert "redis-data" in compose["volumes"]
    assert "healthcheck" in services["postgres"]


def test_migration_runs_once_and_gates_the_others(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("ingest", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy", name


def test_usqa_services_run_real_usqa_commands(services: dict[str, Any]) -> None:
    for name in USQA_SERVICES:
        argv = [interpolate_defaults(str(a)) for a in services[name]["command"]]
        assert_usqa_command(argv, f"compose service {name}")
        assert services[name]["image"].startswith("${DEPLOY_IMAGE:-usqa")
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
        assert "env_file" not in services[name], "no container gets the whole usqa.env"
    for name in ("ingest", "worker"):
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD" and test[1] == "usqa"
        assert_usqa_command(test[2:], f"compose {name} healthcheck")


def test_workers_scale_and_share_the_drop_folder_with_the_ingester(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    assert "container_name" not in worker, "a fixed container name forbids --scale worker=N"
    assert "ports" not in worker, "published ports clash when workers are scaled"
    assert worker["stop_grace_period"]
    drop = "${DEPLOY_DROP_DIR:-./dropbox}:/data/dropbox"
    assert drop in worker["volumes"] and drop in services["ingest"]["volumes"]
    assert services["ingest"]["command"][services["ingest"]["command"].index("--watch") + 1] == (
        "/data/dropbox"
    )


def test_review_page_is_local_reads_the_drop_folder_and_waits_for_the_schema(
    services: dict[str, Any],
) -> None:
    web = services["web"]
    assert web["command"] == ["serve"]
    assert web["ports"] == ["127.0.0.1:${DEPLOY_WEB_PORT:-8080}:8080"], "behind the proxy only"
    assert web["volumes"] == ["${DEPLOY_DROP_DIR:-./dropbox}:/data/dropbox:ro"]
    assert web["environment"]["USQA_WEB_PORT"] == "8080"
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])


def test_containers_are_locked_down(services: dict[str, Any]) -> None:
    for name in USQA_SERVICES:
        svc = services[name]
        assert svc["read_only"] is True, name
        assert "/tmp" in svc["tmpfs"], name
        assert svc["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert svc["user"] == "${DEPLOY_UID:-10001}:${DEPLOY_GID:-10001}", name
    # Web UIs only on the server itself.
    for name in ("flower", "prometheus", "grafana"):
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def test_bind_mounted_files_exist(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{name}: {source} missing"


def test_secrets_are_only_in_the_uncommitted_env_file(services: dict[str, Any]) -> None:
    # Compose passes secrets through env_file only: no literal password in the compose file.
    text = COMPOSE.read_text(encoding="utf-8").lower()
    for word in ("password=", "password:", "requirepass "):
        for line in text.splitlines():
            if word in line and "$" not in line and not line.lstrip().startswith("#"):
                pytest.fail(f"docker-compose.yml holds a literal secret: {line.strip()}")
    env = _env_example()
    for key, value in env.items():
        if any(w in key for w in ("PASSWORD", "SALT", "BASIC_AUTH")):
            assert "CHANGE-ME" in value, f"usqa.env.example: {key} holds a real-looking secret"
    for key in ("USQA_DATABASE_URL", "USQA_BROKER_URL"):
        assert "CHANGE-ME" in env[key], key
    # The real env file is ignored by git.
    result = subprocess.run(["git", "check-ignore", "-q", "deploy/usqa.env"], cwd=REPO, check=False)
    assert result.returncode == 0, "deploy/usqa.env is not in .gitignore"


def test_env_example_names_real_settings_and_what_compose_reads(compose: dict[str, Any]) -> None:
    env = _env_example()
    usqa = {k for k in env if k.startswith("USQA_")}
    assert usqa <= setting_variables(), f"not usqa settings: {usqa - setting_variables()}"
    text = COMPOSE.read_text(encoding="utf-8")
    for key in [k for k in env if k.startswith("DEPLOY_")]:
        assert f"${{{key}" in text, f"usqa.env.example sets {key}, which compose never reads"
    # Everything compose interpolates is documented in the example.
    for key in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", text):
        assert key in env, f"docker-compose.yml reads ${{{key}}} but usqa.env.example lacks it"
    # The containers get passwords the services need.
    for key in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_BASIC_AUTH"):
        assert key in env, key
    for name, svc in compose["services"].items():
        for key in svc.get("environment", {}) or {}:
            if key.startswith("USQA_"):
                assert key in setting_variables(), f"{name}: {key}"


def test_gpu_override_reserves_gpus_for_workers() -> None:
    gpu = yaml.safe_load(GPU.read_text(encoding="utf-8"))
    worker = gpu["services"]["worker"]
    assert worker["environment"]["USQA_DEVICE"] == "cuda"
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]


def _compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(not _compose_available(), reason="docker compose client not installed")
def test_docker_compose_config_accepts_the_files(tmp_path: Path) -> None:
    env_file = DEPLOY / "usqa.env"
    created = not env_file.exists()
    if created:
        shutil.copy(ENV_EXAMPLE, env_file)
    try:
        for files in (["-f", str(COMPOSE)], ["-f", str(COMPOSE), "-f", str(GPU)]):
            result = subprocess.run(
                [
                    "docker",
                    "compose",
                    "--env-file",
                    str(ENV_EXAMPLE),
                    *files,
                    "--profile",
                    "monitoring",
                    "config",
                    "--quiet",
                ],
                capture_output=True,
                text=True,
                check=False,
                cwd=DEPLOY,
            )
            assert result.returncode == 0, result.stderr
    finally:
        if created:
            env_file.unlink()
