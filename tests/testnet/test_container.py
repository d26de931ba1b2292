"""Acceptance (issue 16, packaging): the Dockerfile and docker-compose.yml, for real, with
Debian's podman and podman-compose.

No image registry is reachable here, so the base image is made from Debian packages
(`mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm`, then
`podman import`) and handed to the Dockerfile's `BASE` build argument; pip inside the build
gets the machine's CA bundle (`PIP_CERT`, /etc/ssl/certs mounted read-only). Then:
the image runs as a non-root user without a compiler and declares HEALTHCHECK and EXPOSE;
`vipr demo` in it passes 5/5; `podman-compose up -d` brings the compose topology up until every
service's healthcheck passes.

Settings that work on these machines (issue 16): runc with the cgroupfs manager, explicit
ulimits, host networking (a containers.conf the test writes). Debian 12's podman-compose 1.0.3
adds `--net PROJECT_default` even with `network_mode: host`, which podman refuses:
scripts/podman-hostnet (given as `--podman-path`, as the README says) drops it. There is no
systemd here to run healthchecks on a timer, so the test runs each one (`podman healthcheck
run`); podman's "unable to get systemd connection" messages are expected.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from vipr.testnet.workdir import pick_base_port

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = "localhost/vipr-test-base:bookworm"
IMAGE = "localhost/vipr:test"
TOOLS = ("podman", "mmdebstrap", "podman-compose", "runc")
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
netns = "host"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""
# podman-compose 1.0.3 passes "--net P_default" beside "--network host": this drops it
NET_FIX = REPO / "scripts" / "podman-hostnet"


def _why_not() -> str | None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return (f"{', '.join(missing)} not installed (Debian packages podman, mmdebstrap, "
                "podman-compose, runc: scripts/ensure-debs.sh installs them as root)")
    if os.geteuid() != 0:
        return "the container test runs rootful podman: run as root (CI does)"
    return None


class Podman:
    def __init__(self, work: Path) -> None:
        self.work = work
        conf = work / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.wrapper = NET_FIX
        self.env = dict(os.environ, CONTAINERS_CONF=str(conf))

    def run(self, *args: str, timeout: float = 300, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                           env={**self.env, **(env or {})}, cwd=REPO)
        if check:
            assert r.returncode == 0, f"{' '.join(args)}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return r


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    why = _why_not()
    if why:
        pytest.skip(why)
    pm = Podman(tmp_path_factory.mktemp("podman"))
    if pm.run("podman", "image", "exists", BASE_IMAGE, check=False).returncode != 0:
        tar = pm.work / "base.tar"     # made once per machine, then kept as an image
        pm.run("mmdebstrap", "--variant=minbase",
               "--include=python3,python3-venv,ca-certificates", "bookworm", str(tar),
               timeout=900)
        pm.run("podman", "import", str(tar), BASE_IMAGE)
        tar.unlink()
    pm.run("podman", "build", "--format", "docker", "-v", "/etc/ssl/certs:/etc/ssl/certs:ro",
           "--build-arg", f"BASE={BASE_IMAGE}",
           "--build-arg", "PIP_CERT=/etc/ssl/certs/ca-certificates.crt",
           "-t", IMAGE, ".", timeout=900)
    return pm


@pytest.mark.timeout(1200)
def test_image_is_non_root_without_compilers_with_healthcheck(podman: Podman) -> None:
    image = json.loads(podman.run("podman", "image", "inspect", IMAGE).stdout)[0]
    info = image["Config"]
    assert info["User"] == "vipr"
    assert image["Healthcheck"]["Test"] == ["CMD", "vipr", "health"]
    assert {"6084/tcp", "7061/tcp", "5060/udp", "5061/tcp", "5062/udp"} <= set(
        info["ExposedPorts"])
    r = podman.run("podman", "run", "--rm", "--no-healthcheck", "--entrypoint", "sh", IMAGE,
                   "-c", "id -u; for c in gcc cc c++ x86_64-linux-gnu-gcc make; do "
                   "command -v $c; done; vipr --version", check=False)
    lines = r.stdout.split()
    assert lines[0] != "0", r.stdout                    # not root
    assert not any("/" in ln for ln in lines[1:-2]), r.stdout   # no compiler, no make
    assert "vipr" in r.stdout


@pytest.mark.timeout(1200)
def test_demo_in_the_container_passes_five_of_five_as_non_root(podman: Podman) -> None:
    base = pick_base_port()
    r = podman.run("podman", "run", "--rm", "--no-healthcheck", "--entrypoint", "sh", IMAGE,
                   "-c", f"id -un; exec vipr demo --json --base-port {base}", timeout=400,
                   check=False)
    lines = r.stdout.splitlines()
    assert lines and lines[0] == "vipr", r.stdout[-2000:] + r.stderr[-2000:]
    result = json.loads(next(ln for ln in reversed(lines) if ln.startswith("{")))
    assert result["ok"] and result["passed"] == 5, json.dumps(result)[-2000:]
    assert r.returncode == 0


@pytest.mark.timeout(1200)
def test_compose_topology_comes_up_healthy(podman: Podman) -> None:
    project = f"viprtest{os.getpid()}"
    env = {"VIPR_IMAGE": IMAGE, "VIPR_BASE_PORT": str(pick_base_port())}
    compose = ("podman-compose", "--podman-path", str(podman.wrapper), "-p", project)
    try:
        podman.run(*compose, "up", "-d", env=env, timeout=300)
        names = podman.run("podman", "ps", "-a", "--filter", f"label=io.podman.compose."
                           f"project={project}", "--format", "{{.Names}}").stdout.split()
        services = {n.removeprefix(f"{project}_").rsplit("_", 1)[0]: n for n in names}
        assert set(services) == {"init", "pstn", *(f"{r}-{p}" for r in ("overlay", "pvp",
                                 "proxy") for p in "abc")}, names
        init = podman.run("podman", "wait", services.pop("init"), timeout=60).stdout.strip()
        assert init == "0"
        pending = dict(services)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for svc, name in list(pending.items()):
                if podman.run("podman", "healthcheck", "run", name, check=False,
                              timeout=30).returncode == 0:
                    del pending[svc]
            if pending:
                time.sleep(1)        # polling the healthchecks, bounded by the deadline
        logs = {s: podman.run("podman", "logs", "--tail", "5", n, check=False).stderr[-800:]
                for s, n in pending.items()}
        assert not pending, f"not healthy within 120 s: {sorted(pending)}\n{logs}"
        st = podman.run("podman", "inspect", services["overlay-b"],
                        "--format", "{{.State.Health.Status}}").stdout.strip()
        assert st == "healthy"
    finally:
        podman.run(*compose, "down", "-v", env=env, check=False, timeout=300)
        podman.run("podman", "network", "rm", f"{project}_default", check=False)
