"""Runs shell commands from the README one line at a time, as a session: `helm install`,
`upgrade` and `uninstall` through Helm's own Go SDK (PyPI's helm-python-sdk, no helm binary
needed), `kubectl` lines through the real kubectl. The cluster is $KUBECONFIG.

Reads one command per line on stdin and answers each with one line: `ok <output>` or
`error <why>` (newlines escaped), so a test can check the cluster between commands.

Helm keeps its release records in memory for the session (one process, so install, upgrade
and uninstall see the same history): its Secret storage driver writes with client-go's
protobuf encoding, which the tests' fake API server does not decode. Everything Helm applies
to the cluster goes through the API server (server-side apply), as with the helm binary.
"""

from __future__ import annotations

import os
import pathlib
import shlex
import subprocess
import sys

import helm_python as helm
import yaml

from chart import merge

ROOT = pathlib.Path(__file__).resolve().parents[2]
configs: dict[str, helm.Config] = {}


def config(namespace: str) -> helm.Config:
    if namespace not in configs:
        configs[namespace] = helm.Config(kubeconfig_path=os.environ["KUBECONFIG"],
                                         namespace=namespace, storage_driver="memory")
    return configs[namespace]


def parse(words: list[str]) -> dict:
    options = {"namespace": "default", "values": {}, "create_namespace": False,
               "reuse_values": False, "positional": []}
    i = 0
    while i < len(words):
        word = words[i]
        value = words[i + 1] if i + 1 < len(words) else None
        if word in ("--set", "--set-string"):
            parse_set = helm.parse_set_string if word == "--set" else helm.parse_set_string_values
            options["values"] = merge(options["values"], parse_set(value))
            i += 2
        elif word in ("-f", "--values"):
            text = (ROOT / value).read_text()
            options["values"] = merge(options["values"], yaml.safe_load(text) or {})
            i += 2
        elif word in ("-n", "--namespace"):
            options["namespace"] = value
            i += 2
        elif word in ("--create-namespace", "--reuse-values"):
            options[word[2:].replace("-", "_")] = True
            i += 1
        elif word.startswith("-"):
            raise ValueError(f"unsupported helm flag {word}")
        else:
            options["positional"].append(word)
            i += 1
    return options


def run_helm(words: list[str]) -> str:
    command, options = words[1], parse(words[2:])
    cfg, namespace = config(options["namespace"]), options["namespace"]
    if command == "install":
        name, chart = options["positional"]
        release = cfg.install(str(ROOT / chart), name, options["values"], namespace=namespace,
                              create_namespace=options["create_namespace"], timeout=60)
    elif command == "upgrade":
        name, chart = options["positional"]
        release = cfg.upgrade(str(ROOT / chart), name, options["values"], namespace=namespace,
                              reuse_values=options["reuse_values"], timeout=60)
    elif command == "uninstall":
        [name] = options["positional"]
        cfg.uninstall(name, timeout=60)
        return f"release {name} uninstalled"
    else:
        raise ValueError(f"unsupported helm command {command}")
    return f"{release['name']} revision {release['revision']} {release['status']}"


def run(line: str) -> str:
    words = shlex.split(line, comments=True)
    if words[:1] == ["helm"]:
        return run_helm(words)
    if words[:1] == ["kubectl"]:
        done = subprocess.run(line, shell=True, cwd=ROOT, capture_output=True, text=True,
                              timeout=60)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip())
        return done.stdout.strip()
    raise ValueError(f"not a helm or kubectl command: {line}")


def main() -> int:
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            answer = "ok " + run(line)
        except Exception as error:  # noqa: BLE001 - reported to the driving test
            answer = f"error {type(error).__name__}: {error}"
        print(answer.replace("\\", "\\\\").replace("\n", "\\n"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
