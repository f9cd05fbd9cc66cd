"""No Docker engine runs here: the compose file is parsed and its commands checked against the
CLI instead."""

from __future__ import annotations

import subprocess
import sys

import yaml

from tests.conftest import ROOT


def test_compose_services_and_their_commands_exist_in_the_cli():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "migrations", "api", "worker", "gpu-worker"} <= set(services)
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    for name in ("migrations", "api", "worker", "gpu-worker"):
        command = services[name]["command"]
        assert command[0] == "dvrl"
        done = subprocess.run([sys.executable, "-m", "dvrl_cli", command[1], "--help"],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert done.returncode == 0, (name, done.stderr)
        for option in command[2:]:
            if option.startswith("--"):
                assert option in done.stdout, (name, option)
        env = services[name]["environment"]
        assert env["DVRL_DATABASE_URL"].startswith("postgresql") and env["DVRL_BROKER_URL"]


def test_dockerfile_runs_as_non_root_and_pins_the_cpu_torch():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "USER dvrl" in dockerfile and "torch==2.13.0" in dockerfile


def test_worker_refuses_to_start_without_postgres_and_redis():
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "dvrl_cli", "worker"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 2 and "DVRL_DATABASE_URL" in done.stderr
