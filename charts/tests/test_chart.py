"""The Helm chart, rendered by real Helm: lint, Kubernetes schemas, the CRDs' own schemas, the
invariants a cluster operator checks, the Dockerfile's shape and the README's install examples.

What runs the rendered chart against an API server (kubectl apply, a controller started with
the rendered arguments) is the Rust end-to-end test `sluice/tests/e2e/chart.rs`.
"""

from __future__ import annotations

import base64
import re
import shlex
import tomllib

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from chart import CHART, NAMESPACE, RELEASE, ROOT, VALUE_SETS, merge, notes, render, values

# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema the
# validator has.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Kinds of other projects' CRDs: their schemas are not on this machine, so they are checked by
# the invariants below instead.
FOREIGN_KINDS = {
    ("cert-manager.io/v1", "Certificate"),
    ("cert-manager.io/v1", "Issuer"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


@pytest.fixture(scope="module", params=VALUE_SETS)
def rendered(request):
    return request.param, render(values(request.param))


def kinds(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def containers(docs):
    for deployment in kinds(docs, "Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield deployment, container


def flag(container, name):
    """The value of `--name=value` in a container's args (None when absent)."""
    prefix = f"--{name}="
    found = [a[len(prefix):] for a in container["args"] if a.startswith(prefix)]
    assert len(found) <= 1, f"{name} given {len(found)} times"
    return found[0] if found else None


def seconds(duration):
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"{duration}: expected whole seconds"
    return int(match.group(1))


# ---- Helm's own checks -------------------------------------------------------------------

@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_is_clean_with_strict_warnings(name):
    report = helm.lint(CHART, values(name), strict=True, namespace=NAMESPACE,
                       kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


def test_values_schema_refuses_a_misspelt_key_with_its_path():
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema({})
        with pytest.raises(helm.HelmValuesError, match="/proxy.*replicaz"):
            chart.render({"proxy": {"replicaz": 3}}, name=RELEASE, namespace=NAMESPACE)
        with pytest.raises(helm.HelmValuesError, match="/autoscaler.*stable-windw"):
            chart.render({"autoscaler": {"stable-windw": "6s"}}, name=RELEASE,
                         namespace=NAMESPACE)
        with pytest.raises(helm.HelmValuesError, match="/xds/auth"):
            chart.render({"xds": {"auth": "none"}}, name=RELEASE, namespace=NAMESPACE)
        with pytest.raises(helm.HelmValuesError, match="/proxy/holdTimeout"):
            chart.render({"proxy": {"holdTimeout": "30 seconds"}}, name=RELEASE,
                         namespace=NAMESPACE)


# ---- Schemas -----------------------------------------------------------------------------

@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_matches_the_kubernetes_schema(rendered, version):
    _, docs = rendered
    checked = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in FOREIGN_KINDS:
            continue
        # strict: an unknown or misplaced field is an error, as `kubectl apply` would say.
        kubernetes_validate.validate(doc, version, strict=True)
        checked += 1
    assert checked >= 15


def crd_schema(kind):
    for doc in render({}):
        if doc["kind"] == "CustomResourceDefinition" and doc["spec"]["names"]["kind"] == kind:
            return doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    raise AssertionError(f"no CRD for {kind}")


def test_crd_schemas_accept_good_objects_and_refuse_bad_ones():
    revision = crd_schema("Revision")
    good = {"apiVersion": "sluice.dev/v1alpha1", "kind": "Revision",
            "metadata": {"name": "r"},
            "spec": {"service": {"name": "s", "port": 80},
                     "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                                        "name": "d"}}}
    jsonschema.validate(good, revision)
    bad = merge(good, {"spec": {"containerConcurrency": "ten"}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, revision)


# ---- Invariants --------------------------------------------------------------------------

def test_rbac_is_exactly_the_generated_list(rendered):
    _, docs = rendered
    rules = yaml.safe_load((CHART / "files" / "rbac-rules.yaml").read_text())
    cluster_roles = kinds(docs, "ClusterRole")
    roles = kinds(docs, "Role")
    assert [r["metadata"]["name"] for r in cluster_roles] == ["sluice-controller"]
    assert [r["metadata"]["name"] for r in roles] == ["sluice-controller"]
    assert cluster_roles[0]["rules"] == rules["clusterRules"]
    assert roles[0]["rules"] == rules["namespaceRules"]
    assert roles[0]["metadata"]["namespace"] == NAMESPACE
    # Only the controller's service account is bound; proxies have no rights at all.
    for binding in kinds(docs, "ClusterRoleBinding") + kinds(docs, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sluice-controller",
                                        "namespace": NAMESPACE}]
    proxy_account = one(docs, "ServiceAccount", "sluice-proxy")
    assert proxy_account["automountServiceAccountToken"] is False
    proxy = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    assert proxy["serviceAccountName"] == "sluice-proxy"
    assert proxy["automountServiceAccountToken"] is False


def test_containers_run_non_root_read_only_without_capabilities(rendered):
    _, docs = rendered
    found = 0
    for deployment, container in containers(docs):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in context
        assert all(port["containerPort"] > 1024 for port in container["ports"])
        found += 1
    assert found == 2


def test_every_container_has_readiness_and_liveness_probes(rendered):
    _, docs = rendered
    for deployment, container in containers(docs):
        ports = {p["name"] for p in container["ports"]}
        for probe in ("readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] in ports, (deployment, probe)
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_admin_ports_listen_on_loopback_and_no_service_exposes_them(rendered):
    """The admin listeners (/config, /status: pod addresses, every object) stay inside the pod;
    probes, liveness and metrics scraping use the probe port, which serves only those."""
    _, docs = rendered
    admin_ports = set()
    for deployment, container in containers(docs):
        admin = flag(container, "admin")
        probe = flag(container, "probe-addr")
        assert admin and admin.startswith("127.0.0.1:"), (deployment["metadata"]["name"], admin)
        assert probe and probe.startswith("0.0.0.0:"), (deployment["metadata"]["name"], probe)
        admin_port = int(admin.rsplit(":", 1)[1])
        admin_ports.add(admin_port)
        declared = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert "admin" not in declared and admin_port not in declared.values()
        assert declared["probe"] == int(probe.rsplit(":", 1)[1])
        for check in ("readinessProbe", "livenessProbe", "startupProbe"):
            if check in container:
                assert container[check]["httpGet"]["port"] == "probe", (deployment, check)
    assert admin_ports
    for service in kinds(docs, "Service"):
        for port in service["spec"]["ports"]:
            assert port.get("targetPort") != "admin", service["metadata"]["name"]
            assert port["port"] not in admin_ports, service["metadata"]["name"]
            assert port.get("targetPort") not in admin_ports, service["metadata"]["name"]


def test_image_tag_follows_app_version_which_is_the_crate_version(rendered):
    name, docs = rendered
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    assert app_version == workspace["workspace"]["package"]["version"]
    for _, container in containers(docs):
        assert container["image"] == f"sluice:{app_version}"
    pinned = render(merge(values(name), {"image": {"tag": "9.9.9"}}))
    assert {c["image"] for _, c in containers(pinned)} == {"sluice:9.9.9"}


def test_proxy_grace_period_outlasts_its_drain(rendered):
    _, docs = rendered
    pod = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    proxy = pod["containers"][0]
    pre_stop = proxy["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = seconds(flag(proxy, "shutdown-grace"))
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    # A request waiting for a cold Revision can still be answered while the proxy drains.
    assert drain >= seconds(flag(proxy, "hold-timeout"))
    # The preStop sleep is the kubelet's own: the image has no shell.
    assert "exec" not in proxy["lifecycle"]["preStop"]


def test_grace_period_follows_the_drain_values():
    docs = render({"proxy": {"drain": {"preStopSeconds": 3, "shutdownGraceSeconds": 60,
                                       "marginSeconds": 7}}})
    pod = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 70
    assert flag(pod["containers"][0], "shutdown-grace") == "60s"


def test_services_are_the_hosts_kingress_status_reports(rendered):
    _, docs = rendered
    controller = one(docs, "Deployment", "sluice-controller")["spec"]["template"]["spec"]
    args = controller["containers"][0]
    proxy_pod = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]
    proxy = proxy_pod["spec"]["containers"][0]
    proxy_ports = {p["name"]: p["containerPort"] for p in proxy["ports"]}
    for flag_name, service_name in (("public-lb-domain", "sluice"),
                                    ("private-lb-domain", "sluice-internal")):
        service = one(docs, "Service", service_name)
        assert flag(args, flag_name) == f"{service_name}.{NAMESPACE}.svc.cluster.local"
        assert service["spec"]["selector"].items() <= proxy_pod["metadata"]["labels"].items()
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in proxy_ports
    assert one(docs, "Service", "sluice")["spec"]["type"] in ("LoadBalancer", "NodePort",
                                                               "ClusterIP")
    assert one(docs, "Service", "sluice-internal")["spec"]["type"] == "ClusterIP"
    # Proxies dial the controller's Service, on the port the controller listens on.
    xds = one(docs, "Service", "sluice-controller")
    controller_pod = one(docs, "Deployment", "sluice-controller")["spec"]["template"]
    assert xds["spec"]["selector"].items() <= controller_pod["metadata"]["labels"].items()
    port = xds["spec"]["ports"][0]["port"]
    assert flag(proxy, "xds") == f"sluice-controller.{NAMESPACE}.svc.cluster.local:{port}"
    assert flag(args, "xds-listen") == f"0.0.0.0:{port}"


def test_selectors_of_budgets_and_autoscaler_match_their_pods(rendered):
    name, docs = rendered
    for budget in kinds(docs, "PodDisruptionBudget"):
        target = one(docs, "Deployment", budget["metadata"]["name"])
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector == target["spec"]["selector"]["matchLabels"]
        assert selector.items() <= target["spec"]["template"]["metadata"]["labels"].items()
    assert len(kinds(docs, "PodDisruptionBudget")) == 2
    proxy = one(docs, "Deployment", "sluice-proxy")
    autoscalers = kinds(docs, "HorizontalPodAutoscaler")
    if values(name).get("proxy", {}).get("autoscaling", {}).get("enabled"):
        assert [a["spec"]["scaleTargetRef"]["name"] for a in autoscalers] == ["sluice-proxy"]
        assert "replicas" not in proxy["spec"], "the HPA owns the replica count"
    else:
        assert autoscalers == []
        assert proxy["spec"]["replicas"] >= 2
    # Controllers: more than one, on the Lease the chart names, in the release namespace.
    controller = one(docs, "Deployment", "sluice-controller")
    assert controller["spec"]["replicas"] >= 2
    container = controller["spec"]["template"]["spec"]["containers"][0]
    assert flag(container, "lease-name") == "sluice-controller"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_xds_authentication_material_matches_both_ends(rendered):
    name, docs = rendered
    deployments = {d["metadata"]["name"]: d for d in kinds(docs, "Deployment")}
    auth = values(name).get("xds", {}).get("auth", "token")
    for component in ("controller", "proxy"):
        pod = deployments[f"sluice-{component}"]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "xds-auth")
        secret = volume["secret"]["secretName"]
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "xds-auth")
        assert mount["readOnly"] is True
        if auth == "token":
            token = one(docs, "Secret", secret)
            raw = base64.b64decode(token["data"]["token"]).decode()
            assert re.fullmatch(r"[A-Za-z0-9]{48}", raw)
            assert flag(container, "xds-token-file") == f"{mount['mountPath']}/token"
            assert flag(container, "xds-ca") is None
        else:
            certificate = next(c for c in kinds(docs, "Certificate")
                               if c["spec"]["secretName"] == secret)
            usage = "server auth" if component == "controller" else "client auth"
            assert usage in certificate["spec"]["usages"]
            for key in ("ca", "cert", "key"):
                assert flag(container, f"xds-{key}").startswith(mount["mountPath"] + "/")
            assert flag(container, "xds-token-file") is None
    if auth == "certManager":
        controller_cert = one(docs, "Certificate", "sluice-xds-controller")
        assert controller_cert["spec"]["dnsNames"] == [
            f"sluice-controller.{NAMESPACE}.svc.cluster.local"]
        # The self-signed CA chain, each issuer named by what it issues.
        issuers = {i["metadata"]["name"]: i["spec"] for i in kinds(docs, "Issuer")}
        assert issuers["sluice-xds-selfsigned"] == {"selfSigned": {}}
        assert issuers["sluice-xds-ca"] == {"ca": {"secretName": "sluice-xds-ca"}}
        assert one(docs, "Certificate", "sluice-xds-ca")["spec"]["isCA"] is True


def test_an_existing_token_secret_is_used_and_none_is_rendered():
    docs = render({"xds": {"token": {"existingSecret": "my-token"}}})
    assert kinds(docs, "Secret") == []
    for deployment in kinds(docs, "Deployment"):
        volume = deployment["spec"]["template"]["spec"]["volumes"][0]
        assert volume["secret"]["secretName"] == "my-token"


def test_autoscaler_settings_come_from_the_chart_or_from_knative(rendered):
    name, docs = rendered
    controller = one(docs, "Deployment", "sluice-controller")["spec"]["template"]["spec"]
    system_namespace = flag(controller["containers"][0], "system-namespace")
    config_maps = [c for c in kinds(docs, "ConfigMap") if c["metadata"]["name"] ==
                   "config-autoscaler"]
    if values(name).get("knative", {}).get("enabled"):
        assert system_namespace == "knative-serving"
        assert config_maps == [], "Knative owns knative-serving/config-autoscaler"
    else:
        assert system_namespace == NAMESPACE
        [config] = config_maps
        assert config["metadata"]["namespace"] == NAMESPACE
        expected = merge(yaml.safe_load((CHART / "values.yaml").read_text())["autoscaler"],
                         values(name).get("autoscaler", {}))
        assert set(config["data"]) == set(expected)
        assert all(isinstance(v, str) for v in config["data"].values())


def test_autoscaler_numbers_render_as_knative_reads_them():
    docs = render({"autoscaler": {"max-scale-limit": 1000000, "max-scale-up-rate": 2.5,
                                  "enable-scale-to-zero": False}})
    data = one(docs, "ConfigMap", "config-autoscaler")["data"]
    assert data["max-scale-limit"] == "1000000"
    assert data["max-scale-up-rate"] == "2.5"
    assert data["enable-scale-to-zero"] == "false"


def test_tls_adds_https_listeners_ports_and_the_default_certificate(rendered):
    name, docs = rendered
    proxy = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    container = proxy["containers"][0]
    external = {p["name"]: p for p in one(docs, "Service", "sluice")["spec"]["ports"]}
    if values(name).get("tls", {}).get("enabled"):
        assert flag(container, "https") == "0.0.0.0:8443"
        assert flag(container, "internal-https") == "0.0.0.0:8444"
        assert external["https"]["port"] == 443 and external["https"]["targetPort"] == "https"
        volume = next(v for v in proxy["volumes"] if v["name"] == "default-tls")
        assert volume["secret"]["secretName"] == "sluice-default-tls"
        assert flag(container, "default-certificate").endswith("/tls.crt")
    else:
        assert flag(container, "https") is None and "https" not in external


def test_metrics_objects_only_when_asked(rendered):
    name, docs = rendered
    metrics = values(name).get("metrics", {})
    monitors = kinds(docs, "ServiceMonitor")
    dashboards = [c for c in kinds(docs, "ConfigMap") if c["metadata"]["name"] ==
                  "sluice-dashboard"]
    if metrics.get("serviceMonitor", {}).get("enabled"):
        [monitor] = monitors
        selector = monitor["spec"]["selector"]["matchLabels"]
        scraped = [s for s in kinds(docs, "Service")
                   if selector.items() <= s["metadata"]["labels"].items()]
        assert sorted(s["metadata"]["name"] for s in scraped) == [
            "sluice-controller-metrics", "sluice-proxy-metrics"]
        assert all(s["spec"]["ports"][0]["name"] == "metrics" for s in scraped)
        assert all(s["spec"]["ports"][0]["targetPort"] == "probe" for s in scraped)
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    else:
        assert monitors == []
    if metrics.get("dashboard", {}).get("enabled"):
        [dashboard] = dashboards
        assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
        board = yaml.safe_load(dashboard["data"]["sluice.json"])
        exprs = " ".join(t["expr"] for p in board["panels"] for t in p["targets"])
        for metric in ("sluice_requests_total", "sluice_request_duration_seconds_bucket",
                       "sluice_backend_held_requests", "sluice_revision_desired_scale",
                       "sluice_revision_actual_scale"):
            assert metric in exprs
    else:
        assert dashboards == []


def test_dashboard_queries_name_metrics_sluice_exports():
    """Every sluice_* name in the dashboard is registered somewhere in the code."""
    board = (CHART / "files" / "dashboard.json").read_text()
    names = set(re.findall(r"sluice_[a-z_]+", board))
    sources = "".join(p.read_text() for p in ROOT.glob("*/src/**/*.rs"))
    for name in names:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        assert f'"{base}"' in sources, f"{name}: no such metric"


@pytest.mark.parametrize("resources, threads, expected", [
    ({"requests": {"cpu": "500m"}}, None, "1"),
    ({"requests": {"cpu": "1500m"}}, None, "2"),
    ({"requests": {"cpu": "500m"}, "limits": {"cpu": 4}}, None, "4"),
    ({"requests": {"cpu": "2.5"}}, None, "3"),
    ({}, None, "1"),
    ({"requests": {"cpu": "500m"}}, 6, "6"),
])
def test_proxy_threads_follow_its_cpu(resources, threads, expected):
    docs = render({"proxy": {"resources": resources, "threads": threads}})
    proxy = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    assert flag(proxy["containers"][0], "threads") == expected


def test_watch_namespace_is_passed_through():
    docs = render(values("without-knative"))
    controller = one(docs, "Deployment", "sluice-controller")["spec"]["template"]["spec"]
    assert flag(controller["containers"][0], "namespace") == "apps"


def test_extra_args_reach_the_containers_after_the_charts_own():
    docs = render({"proxy": {"extraArgs": ["--stream-idle-timeout=1h", "--access-log=-"]},
                   "controller": {"extraArgs": ["--xds-max-connections=8192"]}})
    proxy = one(docs, "Deployment", "sluice-proxy")["spec"]["template"]["spec"]["containers"][0]
    assert proxy["args"][-2:] == ["--stream-idle-timeout=1h", "--access-log=-"]
    controller = one(docs, "Deployment", "sluice-controller")["spec"]["template"]["spec"]
    assert flag(controller["containers"][0], "xds-max-connections") == "8192"
    # None by default: the defaults are sluice's own.
    plain = one(render({}), "Deployment", "sluice-proxy")["spec"]["template"]["spec"]
    assert flag(plain["containers"][0], "stream-idle-timeout") is None


def test_extra_args_must_be_flags():
    with helm.Chart.load(CHART) as chart:
        with pytest.raises(helm.HelmValuesError, match="/proxy/extraArgs/0"):
            chart.render({"proxy": {"extraArgs": ["stream-idle-timeout 1h"]}}, name=RELEASE,
                         namespace=NAMESPACE)


def test_notes_print_the_next_commands():
    text = notes({})
    assert "kubectl -n sluice-system rollout status deployment/sluice-controller" in text
    assert "sluice.sluice-system.svc.cluster.local" in text
    assert "ingress-class" in text
    knative = notes({"knative": {"enabled": True}})
    assert "knative-serving/config-autoscaler" in knative


# ---- The Dockerfile ----------------------------------------------------------------------

def dockerfile():
    lines, current = [], ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip("\\").strip() + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(" ", 1)[0].upper(), line.split(" ", 1)[1]) for line in lines]


def test_dockerfile_is_multi_stage_distroless_and_non_root():
    instructions = dockerfile()
    froms = [arg for op, arg in instructions if op == "FROM"]
    assert len(froms) >= 2, "a build stage and a runtime stage"
    runtime = froms[-1]
    assert runtime.startswith("gcr.io/distroless/"), runtime
    last_stage = instructions[max(i for i, (op, _) in enumerate(instructions) if op == "FROM"):]
    assert not any(op == "RUN" for op, _ in last_stage), "no shell at run time"
    users = [arg for op, arg in last_stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    pod = render({})
    run_as = one(pod, "Deployment", "sluice-proxy")["spec"]["template"]["spec"][
        "securityContext"]["runAsUser"]
    assert users[-1].split(":")[0] == str(run_as)
    for op, arg in instructions:
        assert not (op == "ADD" and re.search(r"https?://|git@", arg)), "no remote ADD"
    [entrypoint] = [arg for op, arg in last_stage if op == "ENTRYPOINT"]
    binary = yaml.safe_load(entrypoint)[0]
    copies = [arg for op, arg in last_stage if op == "COPY"]
    assert any(arg.startswith("--from=") and arg.split()[-1] == binary for arg in copies)
    for _, container in containers(pod):
        assert container["command"] == [binary]


# ---- README examples ---------------------------------------------------------------------

def readme_section(title):
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def code_blocks(section, language):
    return re.findall(rf"^```{language}\n(.*?)^```", section, re.S | re.M)


def helm_commands():
    """Every `helm install|upgrade|template` in the README's chart sections."""
    for title in ("Install with Helm", "Use with Knative", "Use without Knative",
                  "Upgrade and uninstall"):
        for block in code_blocks(readme_section(title), "sh"):
            for line in block.replace("\\\n", " ").splitlines():
                words = shlex.split(line, comments=True)
                if words[:1] == ["helm"] and words[1] in ("install", "upgrade", "template"):
                    yield title, words


def parse_helm(words):
    vals, namespace, chart, i = {}, "default", None, 2
    positional = []
    while i < len(words):
        word = words[i]
        if word in ("--set", "--set-string"):
            parse = helm.parse_set_string if word == "--set" else helm.parse_set_string_values
            vals = merge(vals, parse(words[i + 1]))
            i += 2
        elif word in ("-f", "--values"):
            vals = merge(vals, yaml.safe_load((ROOT / words[i + 1]).read_text()))
            i += 2
        elif word in ("-n", "--namespace"):
            namespace = words[i + 1]
            i += 2
        elif word.startswith("-"):
            i += 1  # --create-namespace, --install, --wait
        else:
            positional.append(word)
            i += 1
    chart = positional[-1]
    return vals, namespace, chart


def test_readme_helm_commands_render_and_validate():
    commands = list(helm_commands())
    assert len(commands) >= 4, commands
    for title, words in commands:
        vals, namespace, chart = parse_helm(words)
        assert (ROOT / chart).resolve() == CHART, f"{title}: {chart}"
        docs = render(vals, namespace=namespace)
        for doc in docs:
            if (doc["apiVersion"], doc["kind"]) not in FOREIGN_KINDS:
                kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)


def test_readme_manifests_match_kubernetes_and_crd_schemas():
    schemas = {kind: crd_schema(kind) for kind in ("Route", "Revision")}
    checked = 0
    for title in ("Use without Knative", "Use with Knative"):
        for block in code_blocks(readme_section(title), "yaml"):
            for doc in yaml.safe_load_all(block):
                if not doc:
                    continue
                if doc["apiVersion"].startswith("sluice.dev/"):
                    jsonschema.validate(doc, schemas[doc["kind"]])
                else:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[0], strict=True)
                checked += 1
    assert checked >= 4
