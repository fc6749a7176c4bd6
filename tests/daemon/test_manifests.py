"""deploy/kubernetes/: valid Kubernetes objects (kubernetes-validate, strict, its bundled
schemas only), whose daemons run with arguments `jesus daemon` accepts, probed where it serves
its health endpoints, and whose apps reach the daemon's socket."""

from __future__ import annotations

import argparse
import copy
import os
import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from jesus.cli.main import build_parser
from jesus_daemon import cli as daemon_cli
from jesus_daemon.health import LIVE_PATH, READY_PATH, parse_health_address
from jesus_schema_memcache.backend import parse_servers
from tests.integration.test_cli import ROOT

DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(DEPLOY.glob("*.yaml"))
IMAGE = "ghcr.io/jesus/jesus-daemon:"
# The oldest with native sidecars (sidecar-deployment.yaml), and the newest bundled.
VERSIONS = ("1.29", latest_version())
PROBES = {"readinessProbe": READY_PATH, "livenessProbe": LIVE_PATH, "startupProbe": LIVE_PATH}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def objects() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in documents(path)]


def pods() -> list[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) of every workload."""
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in objects()
        if doc["kind"] in ("DaemonSet", "Deployment", "StatefulSet")
    ]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def is_daemon(container: dict[str, Any]) -> bool:
    """The image's own entry point (`jesus`), not a step that runs something else in it."""
    return bool(container["image"].startswith(IMAGE) and "command" not in container)


def environment(container: dict[str, Any]) -> dict[str, str]:
    config_maps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in objects()
        if doc["kind"] == "ConfigMap"
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in config_maps, f"ConfigMap {name} is not in {DEPLOY}"
        env.update(config_maps[name])
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:  # what the kubelet fills in
            env[var["name"]] = POD_FIELDS[var["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


# Stand-ins for the downward API's values.
POD_FIELDS = {"status.podIP": "10.0.0.7"}


def daemon_args(container: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The container's command line as the real `jesus` parser reads it, in its environment."""
    for name in list(os.environ):
        if name.startswith("JESUS_"):
            monkeypatch.delenv(name)
    for name, value in environment(container).items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(container["args"])
    assert args.func is daemon_cli.main, container["args"]
    return args


def socket_place(pod: dict[str, Any], container: dict[str, Any], socket: str) -> tuple[str, str]:
    """Where `socket` is outside the container: (the volume, the path inside it)."""
    path = PurePosixPath(socket)
    for mount in container.get("volumeMounts", []):
        if path.is_relative_to(mount["mountPath"]):
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            inside = str(path.relative_to(mount["mountPath"]))
            if "hostPath" in volume:
                return f"hostPath:{volume['hostPath']['path']}", inside
            assert "emptyDir" in volume, volume
            return f"emptyDir:{volume['name']}", inside
    raise AssertionError(f"{socket} is on no volume of {container['name']}")


def workspace_dependencies(name: str) -> set[str]:
    """`name` and the workspace packages it needs, all the way down."""
    project = tomllib.loads((ROOT / "packages" / name / "pyproject.toml").read_text())["project"]
    needed = {name}
    for requirement in project["dependencies"]:
        dependency = re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0]
        if (ROOT / "packages" / dependency).is_dir():
            needed |= workspace_dependencies(dependency)
    return needed


def test_the_image_installs_what_the_daemon_needs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY packages/([\w-]+) ", dockerfile, re.MULTILINE))
    needed = workspace_dependencies("jesus-daemon") | {"jesus-schema-memcache"}
    assert needed <= copied, f"deploy/Dockerfile misses {sorted(needed - copied)}"
    installed = set(re.findall(r"/src/([\w-]+)", dockerfile.split("RUN pip install", 1)[1]))
    assert copied <= installed


def test_the_manifests_are_there() -> None:
    names = {path.name for path in MANIFESTS}
    assert {"configmap.yaml", "daemonset.yaml", "sidecar-deployment.yaml"} <= names
    kinds = {doc["kind"] for doc in objects()}
    assert {"ConfigMap", "DaemonSet", "Deployment"} <= kinds


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
@pytest.mark.parametrize("version", VERSIONS)
def test_valid_for_kubernetes(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs, f"{path} holds no object"
    for doc in docs:
        # Raises on a field the schema does not know (strict), or a kind it has no schema for.
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_refuses_a_misspelt_field() -> None:
    (doc,) = [d for d in objects() if d["kind"] == "DaemonSet"]
    bad = copy.deepcopy(doc)
    bad["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, VERSIONS[-1], strict=True)


def test_daemons_are_probed_where_they_serve_health(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = 0
    for workload, pod in pods():
        for container in filter(is_daemon, containers(pod)):
            seen += 1
            args = daemon_args(container, monkeypatch)
            assert args.health, f"{workload}: the daemon serves no health endpoints"
            host, port = parse_health_address(args.health)
            assert host == "0.0.0.0", f"{workload}: the kubelet probes the pod's IP, not {host}"
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert port in ports.values(), f"{workload}: port {port} is not declared"
            assert {"readinessProbe", "livenessProbe"} <= container.keys(), workload
            for kind, path in PROBES.items():
                if kind not in container:
                    continue
                get = container[kind]["httpGet"]
                assert get["path"] == path, f"{workload}: {kind} asks {get['path']}"
                assert ports.get(get["port"], get["port"]) == port, f"{workload}: {kind} port"
                assert get.get("scheme", "HTTP") == "HTTP"


def test_daemons_run_as_they_should(monkeypatch: pytest.MonkeyPatch) -> None:
    for workload, pod in pods():
        for container in filter(is_daemon, containers(pod)):
            args = daemon_args(container, monkeypatch)
            assert args.socket_mode & 0o077 == 0o060, f"{workload}: group read-write, no others"
            # One registry for every node: an embedded one would be each pod's own.
            registry = environment(container).get("JESUS_REGISTRY", args.registry)
            assert registry and parse_servers(registry)[0], workload
            # What processes offer is reached from other nodes: at the pod's IP, not 127.0.0.1.
            assert (args.host, args.advertise) == ("0.0.0.0", POD_FIELDS["status.podIP"]), workload
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= container["resources"][kind].keys(), workload
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, workload
            assert context["allowPrivilegeEscalation"] is False, workload
            assert context["capabilities"]["drop"] == ["ALL"], workload
            volume, inside = socket_place(pod, container, args.socket)
            if volume.startswith("emptyDir:"):
                # An emptyDir is writable by everyone: the daemon refuses its top directory.
                assert "/" in inside, f"{workload}: the socket needs a directory of its own"


def test_apps_reach_the_daemons_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every container that names JESUS_DAEMON_SOCKET finds there the socket of a daemon of
    its pod (sidecar) or of its node (DaemonSet), and belongs to the socket's group."""
    node_daemons: dict[tuple[str, str], int] = {}
    pod_daemons: dict[str, dict[tuple[str, str], int]] = {}
    for workload, pod in pods():
        for container in filter(is_daemon, containers(pod)):
            args = daemon_args(container, monkeypatch)
            place = socket_place(pod, container, args.socket)
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            group = pod.get("securityContext", {}).get("fsGroup", context["runAsGroup"])
            if place[0].startswith("hostPath:"):
                node_daemons[place] = group
            else:
                pod_daemons.setdefault(workload, {})[place] = group
    assert node_daemons and pod_daemons
    apps = 0
    for workload, pod in pods():
        for container in containers(pod):
            socket = environment(container).get("JESUS_DAEMON_SOCKET")
            if is_daemon(container) or socket is None:
                continue
            apps += 1
            place = socket_place(pod, container, socket)
            daemons = node_daemons if place[0].startswith("hostPath:") else pod_daemons[workload]
            assert place in daemons, f"{workload}: no daemon's socket at {socket}"
            context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
            groups = {
                context.get("runAsGroup"),
                context.get("fsGroup"),
                *context.get("supplementalGroups", []),
            }
            assert daemons[place] in groups, f"{workload}: not in the socket's group"
    assert apps >= 2
