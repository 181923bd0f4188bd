"""Kubernetes manifests: every document parsed; built-in kinds validated against the Kubernetes
OpenAPI schemas (kubernetes-validate, offline, strict: unknown fields fail); the KEDA resources
checked by structure; the kustomizations built with `kubectl kustomize` (offline); and the
cross-references (selectors, secrets, volumes, commands) checked against each other and the code."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml  # type: ignore[import-untyped]

from tests.deploy.deploy_files import K8S, assert_usqa_command, load_yaml_docs, setting_variables

K8S_VERSION = "1.30"
BASE = K8S / "base"
CLUSTER_SCOPED = {"Namespace", "PersistentVolume", "StorageClass", "ClusterRole"}
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}
OPERATOR_KINDS = {"PodMonitor", "PrometheusRule"}  # Prometheus Operator CRDs


def _all_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in load_yaml_docs(path)]


def _base_docs() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    return [doc for name in kustomization["resources"] for doc in load_yaml_docs(BASE / name)]


def _by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["template"]["spec"]


def test_every_document_has_api_version_kind_and_metadata() -> None:
    docs = _all_docs()
    assert len(docs) >= 15
    for path, doc in docs:
        where = f"{path.relative_to(K8S)} {doc.get('kind')}"
        assert doc.get("apiVersion"), where
        assert doc.get("kind"), where
        if doc["kind"] == "Kustomization":
            continue
        assert doc.get("metadata", {}).get("name"), where
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"].get("namespace") == "usqa", where


def test_builtin_kinds_match_the_kubernetes_schema() -> None:
    checked = 0
    for path, doc in _all_docs():
        if doc["kind"] in KEDA_KINDS | OPERATOR_KINDS or doc["kind"] == "Kustomization":
            continue
        if path.parent.name == "gpu":  # a strategic-merge patch, not a whole object
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path.relative_to(K8S)} {doc['kind']}: {exc.message} at {exc.path}")
        checked += 1
    assert checked >= 14


def test_the_schema_check_rejects_a_broken_manifest() -> None:
    """Guard against a validator that accepts anything: a misspelt field must fail."""
    worker = copy.deepcopy(_by_kind_name(_base_docs())[("Deployment", "usqa-worker")])
    worker["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(worker, K8S_VERSION, strict=True)


def test_keda_scales_the_worker_deployment_on_the_celery_queue() -> None:
    docs = _by_kind_name(_base_docs())
    scaled = docs[("ScaledObject", "usqa-worker")]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "usqa-worker")
    assert ("Deployment", target["name"]) in docs
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    assert meta["address"] == "usqa-redis.usqa.svc.cluster.local:6379"
    # The Redis list KEDA measures is the Celery queue the workers consume.
    from worker.transport.celery_app import QUEUE

    assert meta["listName"] == QUEUE
    assert ("Service", "usqa-redis") in docs
    assert int(meta["listLength"]) > 0
    # KEDA's metadata values are strings.
    assert all(isinstance(v, str) for v in meta.values())
    auth = docs[("TriggerAuthentication", trigger["authenticationRef"]["name"])]
    (ref,) = auth["spec"]["secretTargetRef"]
    assert ref["parameter"] == "password" and ref["name"] == "usqa-secrets"
    assert ref["key"] in _example_secret_keys()


def test_pdb_covers_the_workers() -> None:
    docs = _by_kind_name(_base_docs())
    pdb = docs[("PodDisruptionBudget", "usqa-worker")]
    worker = docs[("Deployment", "usqa-worker")]
    assert pdb["spec"]["selector"]["matchLabels"] == worker["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_selectors_match_their_pod_labels() -> None:
    for doc in _base_docs():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            for key, value in doc["spec"]["selector"]["matchLabels"].items():
                assert labels.get(key) == value, doc["metadata"]["name"]
    docs = _base_docs()
    pods = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in docs
        if d["kind"] in {"Deployment", "StatefulSet"}
    ]
    for svc in (d for d in docs if d["kind"] == "Service"):
        selector = svc["spec"]["selector"]
        assert any(all(p.get(k) == v for k, v in selector.items()) for p in pods), (
            f"Service {svc['metadata']['name']} selects no pod"
        )


def test_usqa_containers_run_real_commands_with_probes_and_limits() -> None:
    docs = _by_kind_name(_base_docs())
    for key in [
        ("Deployment", "usqa-ingest"),
        ("Deployment", "usqa-listen"),
        ("Deployment", "usqa-worker"),
        ("Job", "usqa-db-upgrade"),
    ]:
        spec = _pod_spec(docs[key])
        (container,) = spec["containers"]
        where = f"{key[0]} {key[1]}"
        assert container["image"] == "usqa"
        assert "command" not in container, f"{where}: keep the image's entry point (tini, usqa)"
        assert_usqa_command(container["args"], where)
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
        assert "memory" in container["resources"]["limits"], where
        assert {"cpu", "memory"} <= set(container["resources"]["requests"]), where
        if key[0] == "Deployment":
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                argv = container[probe]["exec"]["command"]
                assert argv[:2] == ["usqa", "health"], f"{where} {probe}"
                assert_usqa_command(argv[1:], f"{where} {probe}")
                # Restarts for a dead or stuck process only; the broker ping gates readiness.
                assert ("--no-broker" in argv) == (probe != "readinessProbe"), f"{where} {probe}"
            (init,) = spec["initContainers"]
            assert init["args"] == ["db", "current"], where
            assert_usqa_command(init["args"], f"{where} init container")
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts["dropbox"] == "/data/dropbox", where
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert volumes["dropbox"]["persistentVolumeClaim"]["claimName"] == "usqa-dropbox"
    ingest_args = _pod_spec(docs[("Deployment", "usqa-ingest")])["containers"][0]["args"]
    assert ingest_args[ingest_args.index("--watch") + 1] == "/data/dropbox"
    assert docs[("Deployment", "usqa-ingest")]["spec"]["replicas"] == 1
    pvc = docs[("PersistentVolumeClaim", "usqa-dropbox")]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_review_page_serves_behind_the_ingress_and_reads_the_drop_folder() -> None:
    docs = _by_kind_name(_base_docs())
    web = docs[("Deployment", "usqa-web")]
    spec = _pod_spec(web)
    (container,) = spec["containers"]
    assert container["args"] == ["serve"]
    assert_usqa_command(container["args"], "Deployment usqa-web")
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz", probe
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "dropbox"]
    assert mount["readOnly"] is True and mount["mountPath"] == "/data/dropbox"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["USQA_WEB_HOST"] == "0.0.0.0" and env["USQA_WEB_PORT"] == "8080"
    assert docs[("Service", "usqa-web")]["spec"]["type"] == "ClusterIP", "exposed by Ingress"
    policy = docs[("NetworkPolicy", "usqa-web")]["spec"]["ingress"]
    assert [p["port"] for rule in policy for p in rule["ports"]] == [8080]


def test_every_container_has_probes_and_resources() -> None:
    for doc in _base_docs():
        if doc["kind"] not in {"Deployment", "StatefulSet"}:
            continue
        for container in _pod_spec(doc)["containers"]:
            where = f"{doc['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container and "readinessProbe" in container, where
            assert container["resources"]["requests"] and container["resources"]["limits"], where


def test_redis_statefulset_persists_with_aof_and_noeviction() -> None:
    docs = _by_kind_name(_base_docs())
    redis = docs[("StatefulSet", "usqa-redis")]
    assert redis["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    conf = docs[("ConfigMap", "usqa-redis-config")]["data"]["redis.conf"]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in conf.splitlines() if line}
    assert lines["appendonly"] == "yes"
    assert lines["appendfsync"] == "everysec"
    assert lines["maxmemory-policy"] == "noeviction"
    assert lines["dir"] == "/data"


def _example_secret_keys() -> set[str]:
    (secret,) = load_yaml_docs(K8S / "secret.example.yaml")
    return set(secret["stringData"])


def test_no_secret_is_committed() -> None:
    for path, doc in _all_docs():
        if doc["kind"] == "Secret":
            assert path.name == "secret.example.yaml", f"{path}: a Secret outside the example"
            for key, value in doc.get("stringData", {}).items():
                if key not in {"POSTGRES_USER", "POSTGRES_DB"}:
                    assert "CHANGE-ME" in value, f"{path}: {key} looks like a real secret"
            assert "data" not in doc, "base64 data would hide a real value"
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert "secret.example.yaml" not in " ".join(kustomization["resources"])
    assert "secretGenerator" not in kustomization


def test_references_resolve() -> None:
    docs = _base_docs()
    names = _by_kind_name(docs)
    secret_keys = _example_secret_keys()
    config = names[("ConfigMap", "usqa-config")]["data"]
    assert set(config) <= setting_variables(), set(config) - setting_variables()
    for doc in docs:
        if doc["kind"] not in {"Deployment", "StatefulSet", "Job"}:
            continue
        spec = _pod_spec(doc)
        for container in spec["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "usqa-secrets"
                    assert ref["key"] in secret_keys, f"{doc['metadata']['name']}: {ref['key']}"
                if env["name"].startswith("USQA_"):
                    assert env["name"] in setting_variables(), env["name"]
            for source in container.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert ("PersistentVolumeClaim", claim) in names


def test_gpu_overlay_patch_requests_a_gpu_on_gpu_nodes() -> None:
    (patch,) = load_yaml_docs(K8S / "gpu" / "worker-gpu.yaml")
    spec = patch["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["name"] == "worker"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["USQA_DEVICE"] == "cuda"
    assert set(env) <= setting_variables()
    assert spec["nodeSelector"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


def _kubectl() -> str | None:
    return shutil.which("kubectl")


@pytest.mark.skipif(_kubectl() is None, reason="kubectl not installed")
@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_kustomize_builds_offline(overlay: str) -> None:
    result = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    built = [d for d in yaml.safe_load_all(result.stdout) if d]
    expected = {(d["kind"], d["metadata"]["name"]) for d in _base_docs()}
    assert {(d["kind"], d["metadata"]["name"]) for d in built} == expected
    for doc in built:
        if doc["kind"] in KEDA_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    worker = next(
        d for d in built if d["metadata"]["name"] == "usqa-worker" and d["kind"] == "Deployment"
    )
    (container,) = _pod_spec(worker)["containers"]
    if overlay == "gpu":
        assert container["image"].endswith("-cuda")
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert {"name": "USQA_DEVICE", "value": "cuda"} in container["env"]
    else:
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


def test_operator_monitoring_matches_the_prometheus_files() -> None:
    docs = _by_kind_name(load_yaml_docs(K8S / "monitoring" / "usqa-monitoring.yaml"))
    rule = docs[("PrometheusRule", "usqa")]
    alerts = yaml.safe_load((K8S.parent / "prometheus" / "usqa-alerts.yml").read_text("utf-8"))
    assert rule["spec"] == alerts, "PrometheusRule and usqa-alerts.yml have drifted apart"
    monitor = docs[("PodMonitor", "usqa")]
    assert monitor["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "usqa"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    base = _by_kind_name(_base_docs())
    for name in ("usqa-worker", "usqa-ingest"):
        (container,) = _pod_spec(base[("Deployment", name)])["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert endpoint["port"] in ports, name
        env = base[("ConfigMap", "usqa-config")]["data"]
        assert ports[endpoint["port"]] == int(env["USQA_METRICS_PORT"]), name
