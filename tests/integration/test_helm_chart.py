"""The Helm chart (`helm/switchboard`), verified without a cluster.

Helm's own Go SDK (the `helm-python-sdk` package) lints the chart, validates values against
`values.schema.json` and renders it exactly as `helm install` would; every rendered object is
then validated against the Kubernetes OpenAPI schemas (`kubernetes-validate`, strict: unknown
fields fail) for the oldest Kubernetes the chart supports and the newest the package knows.
What only a cluster can show (images start, probes pass, volumes mount, vLLM loads) is out of
reach here; `helm test` covers it on a real install.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from bot.actions.schema import parse_actions
from policies.schema import parse_policy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "switchboard"
DASHBOARD = CHART.parent / "grafana-dashboard.json"
RELEASE = "sb"
FULLNAME = "sb-switchboard"
# Chart.yaml's kubeVersion floor, and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.28", kubernetes_validate.latest_version())
# Kinds that are CRDs, without schemas in kubernetes-validate: their fields are asserted by hand.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

REDIS_URL = "redis://:hunter2-redis-password@redis.example.internal:6379/0"

POLICY = """\
version: 1
links:
  allowed_domains: [help.example.com]
limits:
  max_input_chars: 1000
"""

# The in-chart action server's Service, and the example actions file pointed at it.
ACTIONS_SERVER = f"{FULLNAME}-actions"
ACTIONS_URL = f"http://{ACTIONS_SERVER}:5055"
ACTIONS = (
    (ROOT / "examples" / "actions.yaml").read_text().replace("http://127.0.0.1:5055", ACTIONS_URL)
)

# Realistic value sets, each one way people install the chart.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "redis-trial": {
        "redis": {"enabled": True, "maxmemory": "1gb"},
        "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 6},
        "knowledge": {
            "ingest": {"mode": "initContainer"},
            "documents": {"files": {"returns.md": "# Returns\nYou have 30 days to return."}},
        },
    },
    "vllm-gpu": {
        "replicaCount": 3,
        "redis": {"url": REDIS_URL},
        "llm": {
            "server": {
                "enabled": True,
                "model": {"existingClaim": "models", "dir": "Qwen2.5-7B-Instruct"},
                "servedModelName": "qwen2.5-7b",
                "extraArgs": ["--max-model-len", "8192"],
                "gpuCount": 2,
            }
        },
        "secrets": {"llmApiKey": "sk-vllm-key-123"},
    },
    "existing-secret-ingress-monitor": {
        "replicaCount": 2,
        "secrets": {"existingSecret": "switchboard-prod"},
        "ingress": {
            "enabled": True,
            "hosts": [{"host": "chat.example.com", "paths": [{"path": "/", "pathType": "Prefix"}]}],
            "tls": [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}],
        },
        "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
        "otel": {"endpoint": "http://otel-collector.observability:4318"},
        "policy": POLICY,
        "config": {"webSites": {"shop": {"origins": ["https://shop.example.com"]}}},
    },
    "cronjob-ingest": {
        "redis": {"url": "redis://redis:6379/0"},
        "knowledge": {
            "persistence": {"enabled": True, "storageClass": "efs"},
            "ingest": {"mode": "cronjob", "schedule": "*/30 * * * *"},
            "documents": {"configMap": "help-center"},
        },
    },
    "job-ingest-secrets-from-values": {
        "redis": {"url": REDIS_URL},
        "knowledge": {"persistence": {"enabled": True}, "ingest": {"mode": "job"}},
        "secrets": {
            "adminApiKey": "admin-key-abc",
            "slackSigningSecret": "slack-signing-xyz",
            "slackBotToken": "xoxb-slack-token",
            "webhooks": {"sms": {"secrets": ["whsec-1"], "url": "https://gw.example.com/r"}},
        },
        "actions": "version: 1\nserver:\n  url: http://rasa:5055\nintents: []\n",
    },
    "local-gpu": {
        "redis": {"url": REDIS_URL},
        "replicaCount": 2,
        "llm": {
            "model": "/models/Qwen2.5-1.5B-Instruct",
            "local": {"gpu": True, "cache": {"enabled": True}},
        },
    },
    "action-server": {
        "redis": {"url": REDIS_URL},
        "replicaCount": 2,
        "actionServer": {
            "enabled": True,
            "replicaCount": 2,
            "image": {"repository": "registry.example.com/acme-actions", "tag": "1.4.2"},
            "extraEnv": [
                {
                    "name": "ORDERS_DB_URL",
                    "valueFrom": {"secretKeyRef": {"name": "orders-db", "key": "url"}},
                }
            ],
            "podAnnotations": {"example.com/team": "orders"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
        "actions": ACTIONS,
    },
}


@pytest.fixture(scope="module")
def chart() -> Any:
    loaded = helm.Chart.load(CHART)
    yield loaded
    loaded.close()


def render(chart: Any, values: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects `helm install sb` would create (hooks and test pods included)."""
    manifests = chart.render(values, name=RELEASE, namespace="chat", is_install=True)
    docs: list[dict[str, Any]] = []
    for path, text in sorted(manifests.items()):
        if path.endswith(".yaml"):
            docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} rendered"
    return matches[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def api_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    return next(c for c in pod["containers"] if c["name"] == "api")


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_chart_lints_clean_when_given_each_value_set(values: dict[str, Any]) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v1.28.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_object_matches_kubernetes_schemas_when_rendered(
    chart: Any, values: dict[str, Any]
) -> None:
    docs = render(chart, values)
    assert any(d["kind"] == "Deployment" for d in docs)
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


def test_schema_validation_catches_an_unknown_field() -> None:
    # The strict validation above is only worth something if it fails on a typo.
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"ports": [{"port": 80, "targtPort": 8000}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError, match="targtPort"):
        kubernetes_validate.validate(bad, KUBE_VERSIONS[0], strict=True)


def test_api_pod_probes_and_ports_when_defaults(chart: Any) -> None:
    api = api_container(render(chart, {}))
    assert api["command"] == ["switchboard", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = api["startupProbe"]
    assert startup["httpGet"]["path"] == "/healthz"
    # The first start may convert the model: at least five minutes before liveness counts.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_switchboard_containers_are_locked_down_when_rendered(
    chart: Any, values: dict[str, Any]
) -> None:
    docs = render(chart, values)
    pods = [
        d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"] == FULLNAME
    ] + [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Job"]
    pods += [
        d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in docs if d["kind"] == "CronJob"
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        mounts_by_volume = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["runAsUser"] == 10001
            # The writable places: /tmp (HF_HOME under it) and the data dir, never the image.
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in mounts_by_volume[mounts["/tmp"]]
            assert "emptyDir" in mounts_by_volume[mounts["/data"]]
            env = env_of(container)
            assert env["HF_HOME"]["value"].startswith("/tmp/")
            assert env["SWITCHBOARD_DATA_DIR"]["value"] == "/data"
            assert env["SWITCHBOARD_KNOWLEDGE__INDEX_DIR"]["value"] == "/kb/index"


WORKLOAD_KINDS = {"Deployment", "StatefulSet"}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_every_workload_is_locked_down_and_selects_only_its_pods(
    chart: Any, values: dict[str, Any]
) -> None:
    # Every long-running pod of the chart (API, trial Redis, vLLM, action server), whatever
    # its image: non-root, no token, read-only, no capabilities, sized, and found by its own
    # component's selector only.
    workloads = [d for d in render(chart, values) if d["kind"] in WORKLOAD_KINDS]
    assert workloads
    for workload in workloads:
        name = workload["metadata"]["name"]
        template = workload["spec"]["template"]
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["capabilities"]["drop"] == ["ALL"], name
            assert container["resources"]["requests"]["memory"], name
            assert container["resources"]["limits"]["memory"], name
        labels = template["metadata"]["labels"]
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items(), name
        assert selector["app.kubernetes.io/component"] == labels["app.kubernetes.io/component"]
        assert workload["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm", name
        for other in workloads:
            if other is workload:
                continue
            other_labels = other["spec"]["template"]["metadata"]["labels"]
            other_name = other["metadata"]["name"]
            assert not selector.items() <= other_labels.items(), f"{name} selects {other_name}"


def test_policy_checksum_changes_when_the_policy_changes(chart: Any) -> None:
    def annotations(policy: str) -> dict[str, str]:
        docs = render(chart, {"policy": policy})
        return find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]

    first = annotations(POLICY)
    again = annotations(POLICY)
    changed = annotations(POLICY.replace("1000", "800"))
    assert len(first["checksum/policy"]) == 64
    assert first["checksum/policy"] == again["checksum/policy"]
    assert first["checksum/policy"] != changed["checksum/policy"]
    assert "checksum/policy" not in annotations("")  # the bundled policy: nothing to watch


def test_policy_is_mounted_and_valid_when_given(chart: Any) -> None:
    docs = render(chart, {"policy": POLICY})
    config = find(docs, "ConfigMap", f"{FULLNAME}-config")
    assert parse_policy(config["data"]["policy.yaml"]).limits.max_input_chars == 1000
    api = api_container(docs)
    assert env_of(api)["SWITCHBOARD_POLICY_FILE"]["value"] == "/etc/switchboard/policy.yaml"
    mount = next(m for m in api["volumeMounts"] if m["name"] == "config")
    assert mount == {"name": "config", "mountPath": "/etc/switchboard", "readOnly": True}
    # Without a policy: no ConfigMap, no variable, the image's bundled policy.
    plain = render(chart, {})
    assert not [d for d in plain if d["kind"] == "ConfigMap"]
    assert "SWITCHBOARD_POLICY_FILE" not in env_of(api_container(plain))


def test_secret_checksum_changes_when_a_secret_value_changes(chart: Any) -> None:
    def checksum(key: str) -> str:
        docs = render(chart, {"secrets": {"adminApiKey": key}})
        annotations = find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]
        return str(annotations["annotations"]["checksum/secret"])

    assert checksum("one") == checksum("one") != checksum("two")


def test_secrets_come_from_the_secret_when_given_in_values(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["job-ingest-secrets-from-values"])
    secret = find(docs, "Secret", f"{FULLNAME}-secrets")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data["redis-url"] == REDIS_URL
    assert data["admin-api-key"] == "admin-key-abc"
    assert json.loads(data["webhooks"]) == {
        "sms": {"secrets": ["whsec-1"], "url": "https://gw.example.com/r"}
    }
    env = env_of(api_container(docs))
    for name, key in [
        ("SWITCHBOARD_REDIS_URL", "redis-url"),
        ("SWITCHBOARD_ADMIN_API_KEY", "admin-api-key"),
        ("SWITCHBOARD_SLACK__SIGNING_SECRET", "slack-signing-secret"),
        ("SWITCHBOARD_SLACK__BOT_TOKEN", "slack-bot-token"),
        ("SWITCHBOARD_WEBHOOKS", "webhooks"),
    ]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": f"{FULLNAME}-secrets", "key": key}
    assert "SWITCHBOARD_LLM__API_KEY" not in env  # not given, not referenced
    # Only the Secret holds them: no ConfigMap, env value or annotation of any object does.
    _assert_no_plain_secrets(
        [d for d in docs if d["kind"] != "Secret"],
        ["hunter2-redis-password", "admin-key-abc", "slack-signing-xyz", "xoxb-slack-token"],
    )


def test_no_secret_is_rendered_when_an_existing_secret_is_used(chart: Any) -> None:
    values = {
        **VALUE_SETS["existing-secret-ingress-monitor"],
        # Given anyway by mistake: they must not leak into anything rendered.
        "redis": {"url": REDIS_URL},
    }
    values["secrets"] = {
        "existingSecret": "switchboard-prod",
        "adminApiKey": "admin-key-abc",
        "slackBotToken": "xoxb-slack-token",
    }
    docs = render(chart, values)
    assert not [d for d in docs if d["kind"] == "Secret"]
    _assert_no_plain_secrets(docs, ["hunter2-redis-password", "admin-key-abc", "xoxb-slack-token"])
    api = api_container(docs)
    env = env_of(api)
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs["SWITCHBOARD_REDIS_URL"] == {
        "name": "switchboard-prod",
        "key": "redis-url",
        "optional": True,
    }
    assert {r["key"] for r in refs.values()} == {
        "redis-url",
        "admin-api-key",
        "slack-signing-secret",
        "slack-bot-token",
        "webhooks",
        "llm-api-key",
        "web-secret",
    }
    assert all(r["name"] == "switchboard-prod" for r in refs.values())
    annotations = find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["annotations"]
    assert "checksum/secret" not in annotations  # nothing of ours to watch


def _assert_no_plain_secrets(docs: list[dict[str, Any]], secrets: list[str]) -> None:
    text = yaml.safe_dump_all(docs)
    for secret in secrets:
        assert secret not in text, f"{secret!r} rendered in plain text"


def test_api_uses_the_vllm_server_when_llm_server_enabled(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["vllm-gpu"])
    env = env_of(api_container(docs))
    assert env["SWITCHBOARD_LLM__ENGINE"]["value"] == "openai"
    assert env["SWITCHBOARD_LLM__BASE_URL"]["value"] == f"http://{FULLNAME}-llm:8000/v1"
    assert env["SWITCHBOARD_LLM__MODEL"]["value"] == "qwen2.5-7b"
    assert env["SWITCHBOARD_LLM__API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "llm-api-key"
    assert "SWITCHBOARD_LLM__DEVICE" not in env
    api_limits = api_container(docs)["resources"].get("limits", {})
    assert "nvidia.com/gpu" not in api_limits  # the GPU is the server's

    server = find(docs, "Deployment", f"{FULLNAME}-llm")["spec"]["template"]["spec"]
    vllm = server["containers"][0]
    assert vllm["image"].startswith("vllm/vllm-openai:")
    args = vllm["args"]
    assert args[: args.index("--port") + 2] == [
        "--model",
        "/models/Qwen2.5-7B-Instruct",
        "--served-model-name",
        "qwen2.5-7b",
        "--port",
        "8000",
    ]
    assert args[-2:] == ["--max-model-len", "8192"]
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert vllm["readinessProbe"]["httpGet"]["path"] == "/health"
    assert env_of(vllm)["VLLM_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "llm-api-key"
    assert server["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert server["tolerations"][0]["key"] == "nvidia.com/gpu"
    models = next(v for v in server["volumes"] if v["name"] == "models")
    assert models["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}
    service = find(docs, "Service", f"{FULLNAME}-llm")
    assert service["spec"]["ports"][0]["port"] == 8000


def test_api_runs_the_model_on_a_gpu_when_llm_local_gpu(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["local-gpu"])
    api = api_container(docs)
    env = env_of(api)
    assert env["SWITCHBOARD_LLM__ENGINE"]["value"] == "auto"  # transformers on the GPU
    assert env["SWITCHBOARD_LLM__DEVICE"]["value"] == "cuda"
    assert env["SWITCHBOARD_LLM__CACHE_DIR"]["value"] == "/models"
    assert api["resources"]["limits"] == {"memory": "6Gi", "nvidia.com/gpu": 1}
    pod = find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert find(docs, "PersistentVolumeClaim", f"{FULLNAME}-models")
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-llm"]
    # The CPU default asks for no GPU at all.
    assert "nvidia.com/gpu" not in api_container(render(chart, {}))["resources"]["limits"]


def test_action_server_is_served_where_the_actions_file_points_when_enabled(
    chart: Any,
) -> None:
    docs = render(chart, VALUE_SETS["action-server"])
    deployment = find(docs, "Deployment", ACTIONS_SERVER)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/component"] == "actions"
    assert deployment["spec"]["replicas"] == 2
    template = deployment["spec"]["template"]
    pod = template["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.example.com/acme-actions:1.4.2"
    assert container["args"] == [
        "python",
        "-m",
        "rasa_sdk",
        "--actions",
        "order_actions",
        "--port",
        "5055",
    ]
    assert container["ports"] == [{"name": "http", "containerPort": 5055, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    env = env_of(container)
    assert env["ORDERS_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "orders-db", "key": "url"}
    assert not [name for name in env if name.startswith("SWITCHBOARD_")]  # no API secrets
    assert template["metadata"]["annotations"] == {"example.com/team": "orders"}
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}

    # The API pods' security: non-root uid 10001, read-only, no token; /tmp is the one
    # writable place (Sanic's worker manager keeps a socket there).
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    api_pod = find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert pod["securityContext"] == api_pod["securityContext"]
    sc = container["securityContext"]
    assert sc == api_container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert "emptyDir" in {v["name"]: v for v in pod["volumes"]}[mounts["/tmp"]]
    assert env["HOME"]["value"] == "/tmp"

    # The Service: the actions file's URL, selecting the action server's pods and no others.
    service = find(docs, "Service", ACTIONS_SERVER)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 5055, "targetPort": "http", "protocol": "TCP"}
    ]
    selector = service["spec"]["selector"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= template["metadata"]["labels"].items()
    api_labels = find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= api_labels.items()
    api_selector = find(docs, "Service", FULLNAME)["spec"]["selector"]
    assert not api_selector.items() <= template["metadata"]["labels"].items()
    url = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert url == ACTIONS_URL
    config = find(docs, "ConfigMap", f"{FULLNAME}-config")
    assert parse_actions(config["data"]["actions.yaml"]).server.url == url
    assert env_of(api_container(docs))["SWITCHBOARD_ACTIONS_FILE"]["value"] == (
        "/etc/switchboard/actions.yaml"
    )
    notes = chart.render(VALUE_SETS["action-server"], name=RELEASE, namespace="chat")
    assert f"url: {url}" in notes["switchboard/templates/NOTES.txt"]


def test_action_server_follows_its_port_module_and_the_app_version(chart: Any) -> None:
    values = {"actionServer": {"enabled": True, "port": 8080, "actionsModule": "acme.actions"}}
    docs = render(chart, values)
    pod = find(docs, "Deployment", ACTIONS_SERVER)["spec"]["template"]["spec"]
    (actions,) = pod["containers"]
    assert actions["image"] == "ghcr.io/switchboard-chat/switchboard-actions:0.1.0"
    assert actions["args"][3:] == ["--actions", "acme.actions", "--port", "8080"]
    assert actions["ports"][0]["containerPort"] == 8080
    assert find(docs, "Service", ACTIONS_SERVER)["spec"]["ports"][0]["port"] == 8080
    notes = chart.render(values, name=RELEASE, namespace="chat")["switchboard/templates/NOTES.txt"]
    assert f"url: http://{ACTIONS_SERVER}:8080" in notes
    assert "stay off until `actions:` is set" in notes
    # An actions file that names another server: the notes say so.
    notes = chart.render({**values, "actions": ACTIONS}, name=RELEASE, namespace="chat")
    assert f"does not name http://{ACTIONS_SERVER}:8080" in notes["switchboard/templates/NOTES.txt"]


def test_nothing_of_the_action_server_renders_when_defaults(chart: Any) -> None:
    docs = render(chart, {})
    assert not [d for d in docs if d["metadata"]["name"] == ACTIONS_SERVER]
    assert not [
        d
        for d in docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "actions"
    ]
    notes = chart.render({}, name=RELEASE, namespace="chat")["switchboard/templates/NOTES.txt"]
    assert "Action server" not in notes and ACTIONS_SERVER not in notes


def test_trial_redis_is_durable_and_never_evicts_when_enabled(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["redis-trial"])
    redis_set = find(docs, "StatefulSet", f"{FULLNAME}-redis")
    args = redis_set["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    assert args[args.index("--maxmemory") + 1] == "1gb"
    claim = redis_set["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "8Gi"
    assert find(docs, "Service", f"{FULLNAME}-redis")["spec"]["ports"][0]["port"] == 6379
    env = env_of(api_container(docs))
    assert env["SWITCHBOARD_REDIS_URL"] == {
        "name": "SWITCHBOARD_REDIS_URL",
        "value": f"redis://{FULLNAME}-redis:6379/0",
    }
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_hpa_and_pdb_cover_the_api_when_scaled(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["redis-trial"])
    hpa = find(docs, "HorizontalPodAutoscaler", FULLNAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": FULLNAME,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    target = hpa["spec"]["metrics"][0]["resource"]
    assert target == {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}
    assert "replicas" not in find(docs, "Deployment", FULLNAME)["spec"]  # the HPA owns it
    pdb = find(docs, "PodDisruptionBudget", FULLNAME)
    deployment = find(docs, "Deployment", FULLNAME)
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    # One replica: no PDB (it would block every node drain).
    assert not [d for d in render(chart, {}) if d["kind"] == "PodDisruptionBudget"]


def test_service_selects_the_api_pods_only(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["redis-trial"])
    selector = find(docs, "Service", FULLNAME)["spec"]["selector"]
    api_labels = find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]["labels"]
    redis_labels = find(docs, "StatefulSet", f"{FULLNAME}-redis")["spec"]["template"]
    assert selector.items() <= api_labels.items()
    assert not selector.items() <= redis_labels["metadata"]["labels"].items()


def test_ingress_is_websocket_ready_and_hides_metrics_when_enabled(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["existing-secret-ingress-monitor"])
    ingress = find(docs, "Ingress", FULLNAME)
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert not any("affinity" in key for key in annotations)  # state lives in Redis
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "chat.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": FULLNAME, "port": {"number": 8000}}
    assert ingress["spec"]["tls"] == [{"secretName": "chat-tls", "hosts": ["chat.example.com"]}]
    deny = find(docs, "Ingress", f"{FULLNAME}-deny-metrics")
    path = deny["spec"]["rules"][0]["http"]["paths"][0]
    assert (path["path"], path["pathType"]) == ("/metrics", "Exact")
    assert deny["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/whitelist-source-range": "127.0.0.1/32"
    }
    assert not [d for d in render(chart, {}) if d["kind"] == "Ingress"]


def test_metrics_are_scrapable_and_traced_when_configured(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["existing-secret-ingress-monitor"])
    pod_meta = find(docs, "Deployment", FULLNAME)["spec"]["template"]["metadata"]
    annotations = pod_meta["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8000"
    assert annotations["prometheus.io/path"] == "/metrics"
    # The ServiceMonitor is a CRD (no schema offline): its fields, by hand.
    monitor = find(docs, "ServiceMonitor", FULLNAME)
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    service = find(docs, "Service", FULLNAME)
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [p["name"] for p in service["spec"]["ports"]] == ["http"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["chat"]}
    env = env_of(api_container(docs))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4318"
    assert env["OTEL_SERVICE_NAME"]["value"] == FULLNAME
    assert json.loads(env["SWITCHBOARD_WEB__SITES"]["value"]) == {
        "shop": {"origins": ["https://shop.example.com"]}
    }
    assert not [d for d in render(chart, {}) if d["kind"] == "ServiceMonitor"]


def test_ingest_job_is_a_post_install_hook_into_the_shared_volume(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["job-ingest-secrets-from-values"])
    job = find(docs, "Job", f"{FULLNAME}-ingest")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["switchboard", "kb", "ingest", "/kb/documents"]
    claim = f"{FULLNAME}-kb"
    assert {"name": "kb", "persistentVolumeClaim": {"claimName": claim}} in pod["volumes"]
    api_pod = find(docs, "Deployment", FULLNAME)["spec"]["template"]["spec"]
    assert {"name": "kb", "persistentVolumeClaim": {"claimName": claim}} in api_pod["volumes"]
    pvc = find(docs, "PersistentVolumeClaim", claim)
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_ingest_cronjob_reads_the_documents_configmap_when_mode_cronjob(chart: Any) -> None:
    docs = render(chart, VALUE_SETS["cronjob-ingest"])
    assert not [d for d in docs if d["kind"] == "Job"]
    cron = find(docs, "CronJob", f"{FULLNAME}-ingest")
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"] == ["switchboard", "kb", "ingest", "/documents"]
    assert {"name": "documents", "configMap": {"name": "help-center"}} in pod["volumes"]
    pvc = find(docs, "PersistentVolumeClaim", f"{FULLNAME}-kb")
    assert pvc["spec"]["storageClassName"] == "efs"


def test_init_container_indexes_inline_documents_and_rolls_on_change(chart: Any) -> None:
    values = VALUE_SETS["redis-trial"]
    docs = render(chart, values)
    documents = find(docs, "ConfigMap", f"{FULLNAME}-documents")
    assert documents["data"] == {"returns.md": "# Returns\nYou have 30 days to return.\n"}
    pod = find(docs, "Deployment", FULLNAME)["spec"]["template"]
    init = pod["spec"]["initContainers"][0]
    assert init["command"] == ["switchboard", "kb", "ingest", "/documents"]
    before = pod["metadata"]["annotations"]["checksum/documents"]
    edited = json.loads(json.dumps(values))
    edited["knowledge"]["documents"]["files"]["returns.md"] = "# Returns\n60 days now."
    after = find(render(chart, edited), "Deployment", FULLNAME)["spec"]["template"]
    assert after["metadata"]["annotations"]["checksum/documents"] != before


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_helm_test_pods_check_readiness_and_a_chat_turn(chart: Any, values: dict[str, Any]) -> None:
    docs = render(chart, values)
    tests = {
        d["metadata"]["name"]: d
        for d in docs
        if d["kind"] == "Pod" and d["metadata"]["annotations"].get("helm.sh/hook") == "test"
    }
    assert set(tests) == {f"{FULLNAME}-test-readyz", f"{FULLNAME}-test-chat"}
    for pod in tests.values():
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
        assert pod["spec"]["restartPolicy"] == "Never"
    readyz = tests[f"{FULLNAME}-test-readyz"]["spec"]["containers"][0]
    assert readyz["args"][-1] == f"http://{FULLNAME}:8000/readyz"
    assert "--fail" in readyz["args"]
    script = tests[f"{FULLNAME}-test-chat"]["spec"]["containers"][0]["args"][0]
    assert f"http://{FULLNAME}:8000/api/messages" in script
    body = script.split("-d '", 1)[1].split("'", 1)[0]
    assert json.loads(body) == {"text": "How long do I have to return something?"}
    assert '\'"type":"message"\'' in script and "set -eu" in script


@pytest.mark.parametrize(
    ("set_expression", "where", "why"),
    [
        ("replicaCount=three", "/replicaCount", "got string, want integer"),
        ("replicas=3", "''", "additional properties 'replicas' not allowed"),
        ("service.port=-1", "/service/port", "minimum: got -1, want 1"),
        ("llm.engine=tgi", "/llm/engine", "value must be one of 'local', 'openai'"),
        ("knowledge.ingest.mode=daily", "/knowledge/ingest/mode", "value must be one of"),
        ("redis.url=localhost:6379", "/redis/url", "does not match pattern"),
        ("llm.server.gpuCount=0", "/llm/server/gpuCount", "minimum: got 0, want 1"),
        ("ingress.hostz=chat.example.com", "/ingress", "additional properties 'hostz'"),
        ("autoscaling.targetCPUUtilizationPercentage=150", "/autoscaling/target", "maximum"),
        ("actionServer.replicas=2", "/actionServer", "additional properties 'replicas'"),
        ("actionServer.actionsModule=a/b", "/actionServer/actionsModule", "does not match"),
        ("actionServer.port=80", "/actionServer/port", "minimum: got 80, want 1,024"),
    ],
)
def test_values_schema_rejects_bad_set_values(
    chart: Any, set_expression: str, where: str, why: str
) -> None:
    values = helm.parse_set_string(set_expression)
    with pytest.raises(helm.HelmValuesError) as schema_error:
        chart.validate_schema(values)
    assert where in str(schema_error.value) and why in str(schema_error.value)
    # An install renders through the same check: nothing is rendered from bad values.
    with pytest.raises(helm.HelmValuesError, match="don't meet the specifications"):
        chart.render(values, name=RELEASE)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"replicaCount": 2}, "more than one API replica needs a shared Redis"),
        ({"redis": {"enabled": True, "url": REDIS_URL}}, "not both"),
        ({"llm": {"server": {"enabled": True}}}, "needs llm.server.model.existingClaim"),
        ({"knowledge": {"ingest": {"mode": "job"}}}, "set knowledge.persistence.enabled=true"),
        ({"knowledge": {"ingest": {"mode": "initContainer"}}}, "knowledge.ingest needs documents"),
    ],
)
def test_chart_refuses_broken_combinations_with_the_reason(
    chart: Any, values: dict[str, Any], reason: str
) -> None:
    with pytest.raises(helm.HelmRenderError, match=reason):
        chart.render(values, name=RELEASE)


def test_values_file_documents_every_value() -> None:
    # Every leaf value in values.yaml has a comment right above it or above an enclosing key
    # (podSecurityContext's fields are documented as one), and the schema forbids keys it
    # does not list.
    undocumented = []
    stack: list[tuple[int, bool]] = []  # (indent, documented) of the enclosing keys
    previous = ""
    for number, line in enumerate((CHART / "values.yaml").read_text().splitlines(), 1):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#") or stripped.startswith("-") or ":" not in stripped:
            previous = stripped
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        documented = previous.startswith("#") or any(doc for _, doc in stack)
        is_section = stripped.endswith(":")
        if not documented and not is_section:
            undocumented.append(f"{number}: {stripped}")
        stack.append((indent, documented))
        previous = stripped
    assert undocumented == []
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])
    chart = helm.Chart.load(CHART)
    try:
        chart.validate_schema(values)  # the defaults pass their own schema
    finally:
        chart.close()


def test_grafana_dashboard_charts_the_app_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    for metric in [
        "switchboard_turns_total",
        "switchboard_turn_seconds_bucket",
        "switchboard_ttft_seconds_bucket",
        "switchboard_llm_queue_depth",
        "switchboard_llm_batch_size",
        "switchboard_llm_tokens_per_second",
        "switchboard_llm_tokens_total",
        "switchboard_retrieval_seconds_bucket",
        "switchboard_policy_decisions_total",
        "switchboard_handoffs_total",
        "switchboard_deliveries_total",
        "switchboard_redis_errors_total",
        "switchboard_websocket_connections",
    ]:
        assert metric in exprs, metric
