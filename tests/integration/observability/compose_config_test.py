#!/usr/bin/env python3
"""docker-compose.yml cannot drift from the code: without a Docker engine, this parses the compose file
and runs every command of our image (moe-coordinator, moe-worker, moectl) through the image's entry
point (ops/docker-entrypoint.sh) with the service's environment and --check-config, so each flag and
variable is accepted by the binaries of this build. It also checks that ops/prometheus/prometheus.yml
passes `promtool check config` and scrapes exactly our services on their --metrics-port, that the
Grafana provisioning points the dashboard's datasource uid at the compose Prometheus, and that every
health check runs a binary the image has.

Usage: compose_config_test.py --repo REPO --bin-dir BUILD/bin [--promtool /usr/bin/promtool]
"""
import argparse
import json
import os
import re
import atexit
import shutil
import subprocess
import sys
import tempfile

import yaml

OUR_BINARIES = {"moe-coordinator", "moe-worker", "moectl"}
failures = []


def fail(message):
    failures.append(message)
    print("FAIL: " + message, file=sys.stderr)


def substitute(value):
    """Compose's ${VAR:-default} interpolation, with the defaults (no .env is read)."""
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", str(value))


def flag_value(command, flag):
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def check_certs_service(name, service, repo):
    """The one-shot certificate maker: its command runs ops/tls/make-dev-certs.sh (the image's
    moe-make-dev-certs) and must make a CA and a certificate for every service that names one in
    MOE_TLS_CERT."""
    command = [substitute(c) for c in service.get("command", [])]
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run(["bash", os.path.join(repo, "ops", "tls", "make-dev-certs.sh"), out, *command[1:]],
                             capture_output=True, text=True, timeout=60)
        if run.returncode != 0:
            fail(f"service {name}: make-dev-certs {' '.join(command[1:])} exited {run.returncode}:\n{run.stderr}")
            return set()
        return {f"/tls/{f}" for f in os.listdir(out)}


def check_our_service(name, service, repo, bin_dir, empty_models_dir):
    command = [substitute(c) for c in service.get("command", [])]
    if not command or command[0] not in OUR_BINARIES:
        fail(f"service {name}: command {command!r} does not start one of {sorted(OUR_BINARIES)}")
        return
    # Paths inside the service's named volumes (the state file's folder) exist in the container: stand in a
    # scratch folder for each, so --check-config can check that they are writable.
    for volume in service.get("volumes") or []:
        source, _, target = str(volume).partition(":")
        target = target.split(":")[0]
        if target and not source.startswith((".", "/", "$")):
            stand_in = tempfile.mkdtemp(prefix=f"compose-{name}-volume-")
            atexit.register(shutil.rmtree, stand_in, True)
            command = [c.replace(target, stand_in, 1) if c.startswith(target) else c for c in command]
    env = {"PATH": bin_dir + os.pathsep + "/usr/bin:/bin", "MOE_MODELS_DIR": empty_models_dir}
    for key, value in (service.get("environment") or {}).items():
        env[key] = substitute(value)
    if command[0] == "moectl":
        # moectl has no --check-config: its subcommand must accept every flag given (checked with --help
        # listing each of them).
        listed = subprocess.run([os.path.join(bin_dir, "moectl"), command[1], "--help"], env=env,
                                capture_output=True, text=True, timeout=30)
        for arg in command[2:]:
            if arg.startswith("--") and arg.split("=")[0] not in listed.stdout:
                fail(f"service {name}: moectl {command[1]} does not know {arg}")
        return
    entrypoint = os.path.join(repo, "ops", "docker-entrypoint.sh")
    run = subprocess.run(["sh", entrypoint, *command, "--check-config"], env=env, capture_output=True, text=True,
                         timeout=30)
    if run.returncode != 0:
        fail(f"service {name}: `{' '.join(command)} --check-config` exited {run.returncode}:\n{run.stdout}{run.stderr}")
        return
    # The effective config echoes the flags compose gave.
    for flag in ("--listen", "--metrics-port", "--coordinator", "--min-workers", "--name"):
        value = flag_value(command, flag)
        if value is not None and value not in run.stdout:
            fail(f"service {name}: {flag} {value} is not in the effective config:\n{run.stdout}")
    if command[0] == "moe-coordinator" and not re.search(r'synthetic\s*=\s*"?default', run.stdout):
        fail(f"service {name}: with no model mounted the entry point should serve the embedded synthetic "
             f"'default' model; effective config:\n{run.stdout}")


def check_healthcheck(name, service, bin_dir):
    test = (service.get("healthcheck") or {}).get("test")
    if not test:
        fail(f"service {name} has no health check")
        return
    if test[0] != "CMD":
        fail(f"service {name}: health check should be an exec form [\"CMD\", ...], got {test!r}")
        return
    binary = test[1]
    if binary in OUR_BINARIES and not os.access(os.path.join(bin_dir, binary), os.X_OK):
        fail(f"service {name}: health check runs {binary}, not built in {bin_dir}")
    if binary == "moectl":
        listed = subprocess.run([os.path.join(bin_dir, "moectl"), test[2], "--help"], capture_output=True, text=True,
                                timeout=30)
        for arg in test[3:]:
            if arg.startswith("--") and arg not in listed.stdout:
                fail(f"service {name}: health check's moectl {test[2]} does not know {arg}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--promtool", default="/usr/bin/promtool")
    args = parser.parse_args()
    repo, bin_dir = os.path.abspath(args.repo), os.path.abspath(args.bin_dir)

    with open(os.path.join(repo, "docker-compose.yml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    for required in ("coordinator", "worker1", "worker2", "worker3", "prometheus", "grafana"):
        if required not in services:
            fail(f"docker-compose.yml has no service {required}")

    certs = {n: s for n, s in services.items() if s.get("entrypoint") == ["moe-make-dev-certs"]}
    made = set()
    for name, service in certs.items():
        made |= check_certs_service(name, service, repo)
    ours = {n: s for n, s in services.items()
            if str(s.get("image", "")).startswith("moe-cluster") and n not in certs}
    with tempfile.TemporaryDirectory() as empty_models_dir:
        for name, service in ours.items():
            check_our_service(name, service, repo, bin_dir, empty_models_dir)
    # TLS by default: every daemon and client of ours has a certificate the certs service makes.
    for name, service in ours.items():
        env = service.get("environment") or {}
        for key in ("MOE_TLS_CERT", "MOE_TLS_KEY", "MOE_TLS_CA"):
            if env.get(key) not in made:
                fail(f"service {name}: {key}={env.get(key)!r} is not a file the certs service makes ({sorted(made)})")
    for name, service in services.items():
        if name not in certs:
            check_healthcheck(name, service, bin_dir)
    for name in ("coordinator", "worker1"):
        if not any(str(v).endswith(":/models:ro") for v in services[name].get("volumes", [])):
            fail(f"service {name} does not mount the model volume at /models")
    dockerfile = os.path.join(repo, services["coordinator"]["build"]["dockerfile"])
    with open(dockerfile) as f:
        docker_text = f.read()
    for needle in ("FROM debian:12", "ops/install-deps.sh", "docker-entrypoint.sh"):
        if needle not in docker_text:
            fail(f"{dockerfile} does not mention {needle}")

    # Prometheus: valid config, and its targets are exactly our services' metrics ports.
    prometheus_yml = os.path.join(repo, "ops", "prometheus", "prometheus.yml")
    # promtool checks that credentials files exist: check a copy beside a stand-in token file, as the
    # compose service writes /etc/prometheus/cluster-token beside the mounted config.
    promtool_dir = tempfile.mkdtemp(prefix="compose-prometheus-")
    atexit.register(shutil.rmtree, promtool_dir, True)
    shutil.copy(prometheus_yml, os.path.join(promtool_dir, "prometheus.yml"))
    with open(os.path.join(promtool_dir, "cluster-token"), "w") as f:
        f.write("stand-in")
    # ... and stand-ins for the TLS files it names (the compose certs volume at /etc/prometheus/tls).
    os.makedirs(os.path.join(promtool_dir, "tls"))
    for name in ("ca.pem", "prometheus.pem", "prometheus.key"):
        open(os.path.join(promtool_dir, "tls", name), "w").close()
    check = subprocess.run([args.promtool, "check", "config", os.path.join(promtool_dir, "prometheus.yml")],
                           capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        fail(f"promtool check config {prometheus_yml}:\n{check.stdout}{check.stderr}")
    with open(prometheus_yml) as f:
        prometheus = yaml.safe_load(f)
    for job in prometheus["scrape_configs"]:
        if job["job_name"] in ("moe-coordinator", "moe-worker"):
            auth = job.get("authorization") or {}
            if auth.get("type", "Bearer") != "Bearer" or not auth.get("credentials_file"):
                fail(f"prometheus.yml job {job['job_name']} sends no cluster token (authorization: credentials_file)")
    certs_made = services.get("certs", {}).get("command", [])
    for job in prometheus["scrape_configs"]:
        tls = job.get("tls_config") or {}
        if job["job_name"] in ("moe-coordinator", "moe-worker") and job.get("scheme") != "https":
            fail(f"prometheus.yml job {job['job_name']} scrapes over plain HTTP; compose runs the daemons with TLS")
        cert = os.path.basename(tls.get("cert_file", ""))
        if cert and cert.removesuffix(".pem") not in certs_made:
            fail(f"prometheus.yml job {job['job_name']} uses {cert}, which the certs service does not make")
    prometheus_env = services["prometheus"].get("environment") or {}
    if "MOE_CLUSTER_TOKEN" not in prometheus_env or "cluster-token" not in " ".join(services["prometheus"].get("entrypoint", [])):
        fail("the prometheus service does not write the cluster token its scrape config reads")
    scraped = {t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    expected = set()
    for name, service in ours.items():
        command = [substitute(c) for c in service["command"]]
        port = flag_value(command, "--metrics-port")
        if port and port != "0":
            expected.add(f"{service.get('hostname', name)}:{port}")
    # A moectl that serves /metrics must listen beyond its own container's loopback for Prometheus, and
    # the demo client must load this compose cluster (its workers' panels), not a cluster of its own.
    for name, service in ours.items():
        command = [substitute(c) for c in service["command"]]
        if command[0] != "moectl":
            continue
        port = flag_value(command, "--metrics-port")
        if port and port != "0" and flag_value(command, "--metrics-host") in (None, "127.0.0.1", "localhost"):
            fail(f"service {name}: /metrics on port {port} listens on loopback only; Prometheus cannot scrape it")
        if command[1] == "demo" and flag_value(command, "--cluster") != "coordinator:7400":
            fail(f"service {name}: moectl demo must drive the compose cluster (--cluster coordinator:7400)")
    if scraped != expected:
        fail(f"prometheus.yml scrapes {sorted(scraped)}, docker-compose.yml serves /metrics on {sorted(expected)}")
    prometheus_mounts = " ".join(services["prometheus"].get("volumes", []))
    if "./ops/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml" not in prometheus_mounts:
        fail("the prometheus service does not mount ops/prometheus/prometheus.yml")

    # Grafana: provisioning mounted, datasource uid = the dashboard's, dashboards path = the mount.
    grafana_mounts = [v.split(":")[:2] for v in services["grafana"].get("volumes", [])]
    mounts = {src: dst for src, dst in grafana_mounts}
    if mounts.get("./ops/grafana/provisioning") != "/etc/grafana/provisioning":
        fail(f"grafana does not mount ops/grafana/provisioning at /etc/grafana/provisioning: {mounts}")
    with open(os.path.join(repo, "ops/grafana/provisioning/datasources/prometheus.yml")) as f:
        datasources = yaml.safe_load(f)["datasources"]
    with open(os.path.join(repo, "ops/grafana/provisioning/dashboards/moe.yml")) as f:
        provider = yaml.safe_load(f)["providers"][0]
    if mounts.get("./ops/grafana/dashboards") != provider["options"]["path"]:
        fail(f"dashboards provider reads {provider['options']['path']}, compose mounts dashboards at "
             f"{mounts.get('./ops/grafana/dashboards')}")
    with open(os.path.join(repo, "ops/grafana/dashboards/moe-cluster.json")) as f:
        dashboard = json.load(f)
    if dashboard.get("title") != "MoE cluster":
        fail(f"dashboard title is {dashboard.get('title')!r}, expected 'MoE cluster'")
    uids = {ds["uid"] for ds in datasources}
    prometheus_urls = {ds["url"] for ds in datasources}
    if "http://prometheus:9090" not in prometheus_urls:
        fail(f"no datasource points at the compose prometheus: {prometheus_urls}")
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            if target["datasource"]["uid"] not in uids:
                fail(f"panel {panel['title']!r} uses datasource uid {target['datasource']['uid']}, provisioned: {uids}")

    if failures:
        print(f"{len(failures)} problem(s)", file=sys.stderr)
        return 1
    print(f"compose: {len(ours)} services of ours accepted --check-config; prometheus, grafana and health checks consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
