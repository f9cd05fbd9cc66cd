"""The image and the installed package, started as users start them.

No container engine can build or run the image here (no registry to pull ``python:3.11-slim``,
``postgres`` or ``redis`` from), so the test replays the Dockerfile itself: its ``ARG``,
``WORKDIR``, ``COPY``, ``RUN`` and ``ENV`` lines, read from the file (never copied by hand), with
the image's absolute folders mapped into a temporary directory and this machine's Python 3.11 in
place of the base image. That builds the wheel, installs it into a fresh virtual environment,
and then the compose file's own commands (``dvrl migrate``, ``dvrl serve``, ``dvrl worker``) run
from that environment, in a directory without the source tree, against a fresh PostgreSQL
database and Redis, until a small job has SUCCEEDED.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT, free_port, upload, wait_for, wait_until_up

IMAGE_FOLDERS = re.compile(r"(?<![\w./-])/(venv|src|dist|app|home/dvrl)(?=[/\s\"']|$)")
# build arguments as `docker build --build-arg` would pass them: no machine here reaches
# PyTorch's own index, so torch comes from the default index (this machine's CPU wheel)
BUILD_ARGS = {"TORCH_INDEX_URL": ""}


@dataclass
class Replay:
    """A Dockerfile's build replayed in ``root`` (its ``/venv`` is ``root/venv``, and so on)."""

    root: Path
    args: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path | None = None
    log: list[str] = field(default_factory=list)

    def path(self, text: str) -> str:
        return IMAGE_FOLDERS.sub(lambda m: str(self.root / m.group(1)), text)

    def shell_env(self) -> dict[str, str]:
        base = Path(sys._base_executable).parent  # the interpreter the venv was made from
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("DVRL_", "VIRTUAL_ENV", "PYTHON"))}
        env["PATH"] = f"{base}:/usr/local/bin:/usr/bin:/bin"
        return env | self.args | self.env

    def run(self, instruction: str, argument: str) -> None:
        if instruction == "FROM":
            self.workdir = self.root  # a new stage ("/"); the base image is this machine's Python
        elif instruction == "ARG":
            name, _, default = argument.partition("=")
            self.args[name] = BUILD_ARGS.get(name, default)
        elif instruction == "WORKDIR":
            self.workdir = Path(self.path(argument))
            self.workdir.mkdir(parents=True, exist_ok=True)
        elif instruction == "ENV":
            for pair in shlex.split(argument):
                name, _, value = pair.partition("=")
                self.env[name] = self.path(value).replace("$PATH", self.shell_env()["PATH"])
        elif instruction == "COPY":
            self.copy(argument)
        elif instruction == "RUN":
            self.shell(argument)
        # USER, EXPOSE, CMD: nothing to build (CMD and the compose commands run later)

    def copy(self, argument: str) -> None:
        words = argument.split()
        stage = [w for w in words if w.startswith("--from=")]
        sources, target = [w for w in words if not w.startswith("--")][:-1], words[-1]
        assert self.workdir is not None, "COPY before FROM"
        destination = Path(self.path(target)) if target.startswith("/") \
            else self.workdir / target
        for source in sources:
            origin = Path(self.path(source)) if stage else ROOT / source
            if origin == destination:
                continue  # COPY --from=build /venv /venv: the same folder here
            if origin.is_dir():
                shutil.copytree(origin, destination, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__"))
            else:
                destination.mkdir(parents=True, exist_ok=True) if target.endswith("/") \
                    else destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(origin, destination)

    def shell(self, command: str) -> None:
        for step in command.split("&&"):
            step = step.strip()
            words = shlex.split(step)
            if words[0] == "apt-get" or words[0] == "rm" or words[0] == "useradd":
                # system packages: the ones the image installs must be on this machine already
                if words[0] == "apt-get" and "install" in words:
                    for package in [w for w in words[words.index("install") + 1:]
                                    if not w.startswith("-")]:
                        done = subprocess.run(["dpkg", "-s", package], capture_output=True)
                        assert done.returncode == 0, f"{package} is not installed here"
                continue
            self.log.append(step)
            done = subprocess.run(["bash", "-c", self.path(step)], cwd=self.workdir,
                                  env=self.shell_env(), capture_output=True, text=True,
                                  timeout=900)
            assert done.returncode == 0, f"{step}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, argument) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, argument = line.partition(" ")
            pairs.append((instruction.upper(), argument.strip()))
    return pairs


def compose_command(service: str) -> list[str]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return list(compose["services"][service]["command"])


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Replay:
    replay = Replay(tmp_path_factory.mktemp("image"))
    for instruction, argument in dockerfile_instructions():
        replay.run(instruction, argument)
    return replay


def test_the_image_installs_a_wheel_that_runs_without_the_source_tree(image, tmp_path):
    assert any("pip wheel" in step for step in image.log)
    venv_python = image.root / "venv" / "bin" / "python"
    code = ("import dvrl_core, dvrl_client, service, migrations; "
            "print(dvrl_core.__file__, dvrl_client.__file__, migrations.__file__)")
    done = subprocess.run([str(venv_python), "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, env=image.shell_env(), timeout=120)
    assert done.returncode == 0, done.stderr
    assert all(str(image.root / "venv") in path for path in done.stdout.split())
    assert str(ROOT) not in done.stdout


def test_compose_services_migrate_serve_and_run_a_job_from_the_installed_image(
        image, fresh_database, tmp_path, tables):
    from tests.conftest import REDIS_URL

    env = image.shell_env() | {
        "DVRL_DATABASE_URL": fresh_database, "DVRL_BROKER_URL": REDIS_URL.rsplit("/", 1)[0] + "/13",
        "DVRL_PROGRESS_INTERVAL_S": "0.2", "DVRL_WORKER_THREADS": "1"}
    home = tmp_path / "elsewhere"  # no source tree here or on the path
    home.mkdir()

    def dvrl(*args: str, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), cwd=home, env=env, capture_output=True, text=True,
                              timeout=300, **kwargs)

    migrate = compose_command("migrations")
    done = dvrl(*migrate)
    assert done.returncode == 0, done.stderr
    created = dvrl("dvrl", "keys", "create", "--owner", "deployer")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()

    port = free_port()
    serve = [port_or(word, port) for word in compose_command("api")]
    processes = []
    with contextlib.ExitStack() as logs:
        for command, name in ((serve, "api"), (compose_command("worker"), "worker")):
            log = logs.enter_context(open(tmp_path / f"{name}.log", "wb"))
            processes.append(subprocess.Popen(command, cwd=home, env=env, stdout=log,
                                              stderr=subprocess.STDOUT))
        logs.callback(_stop, processes)
        base = f"http://127.0.0.1:{port}"
        wait_until_up(base, processes[0], log=tmp_path / "api.log")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            assert client.get("/readyz").json()["mode"] == "celery"
            train, valid = tables
            ids = [upload(client, frame, name)
                   for name, frame in (("train.csv", train), ("valid.csv", valid))]
            job = wait_for(client, client.post("/v1/jobs", json={
                "dataset_id": ids[0], "target": "label", "validation": {"dataset_id": ids[1]},
                "seed": 0, "label_noise": 0.2, "dvrl": {"iterations": 30}}).json()["id"],
                timeout=240)
            assert job["state"] == "SUCCEEDED", job["error"]
            values = client.get(f"/v1/jobs/{job['id']}/values", params={"page_size": 10})
            assert values.status_code == 200 and len(values.json()["items"]) == 10


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def port_or(word: str, port: int) -> str:
    return str(port) if word == "8000" else word


def test_the_gpu_profile_builds_pypis_cuda_torch_and_consumes_the_gpu_queue():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    gpu = compose["services"]["gpu-worker"]
    assert gpu["profiles"] == ["gpu"] and "--gpu" in gpu["command"]
    # an empty index URL makes the Dockerfile install PyPI's torch: the CUDA build on x86_64
    assert gpu["build"]["args"]["TORCH_INDEX_URL"] == ""
    assert gpu["image"] != compose["services"]["worker"].get("image")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert '${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}' in dockerfile


def test_worker_refuses_to_start_without_postgres_and_redis():
    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "dvrl_cli", "worker"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)
    assert done.returncode == 2 and "DVRL_DATABASE_URL" in done.stderr
