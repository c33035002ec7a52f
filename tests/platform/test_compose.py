"""docker-compose.yml, the Dockerfile and the collector config, checked offline.

No Docker engine runs here: the compose file is validated against the compose-spec schema
that check-jsonschema vendors, and what matters (gRPC health checks on each service's own
port, health-gated start order, one shared key pair, non-root image built by `make install`,
traces wired to Jaeger) is asserted on the parsed files.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from shared.config import SERVICE_PORTS, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
COLLECTOR = ROOT / "deploy" / "otel-collector.yaml"
CHECK_JSONSCHEMA = Path(sys.executable).parent / "check-jsonschema"

#: Who calls whom (DESIGN.md): each caller needs the target and a healthy callee.
CALLS = {"orbit": set(), "provisioning": set(), "linkbroker": {"orbit", "provisioning"},
         "threat": {"orbit"},
         "gateway": {"orbit", "provisioning", "linkbroker", "threat"}}
APP_DIR = "/app"
VENV_PYTHON = f"{APP_DIR}/.venv/bin/python"


def load_yaml(path: Path):
    return YAML(typ="safe", pure=True).load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def validate(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec_schema():
    done = validate(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def break_healthcheck_key(doc: dict) -> None:
    check = doc["services"]["orbit"]["healthcheck"]
    check["start_perod"] = check.pop("start_period")


def break_condition(doc: dict) -> None:
    doc["services"]["threat"]["depends_on"]["orbit"]["condition"] = "service_ready"


@pytest.mark.parametrize("breakage", [break_healthcheck_key, break_condition])
def test_the_schema_check_rejects_a_broken_file(tmp_path, breakage):
    """The validation is not vacuous: a typo in a key or a condition fails it."""
    doc = load_yaml(COMPOSE)
    assert validate_document(tmp_path / "good.json", doc).returncode == 0
    breakage(doc)
    assert validate_document(tmp_path / "broken.json", doc).returncode != 0


def validate_document(path: Path, doc: dict) -> subprocess.CompletedProcess:
    path.write_text(json.dumps(doc))
    return validate(path)


def test_the_services_are_built_from_the_one_dockerfile(services):
    assert set(CALLS) == set(SERVICE_PORTS)
    built = {name: (svc.get("build"), svc.get("image")) for name, svc in services.items()
             if "build" in svc}
    assert set(built) == {*SERVICE_PORTS, "keys"}
    assert len({repr(value) for value in built.values()}) == 1
    build, _ = next(iter(built.values()))
    assert build == {"context": ".", "dockerfile": "Dockerfile"}
    for name in SERVICE_PORTS:
        assert services[name]["command"] == [VENV_PYTHON, "-m", f"services.{name}"]


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
def test_health_check_uses_the_grpc_health_protocol_on_the_own_port(services, name):
    port = SERVICE_PORTS[name]
    check = services[name]["healthcheck"]
    assert check["test"][:5] == ["CMD", VENV_PYTHON, "-m", "shared.healthcheck",
                                 f"127.0.0.1:{port}"]
    # The gateway speaks HTTP: its check asks /healthz (shared.healthcheck --http).
    assert ("--http" in check["test"]) == (name == "gateway")
    assert check.get("disable") is not True
    published = [str(entry).rsplit(":", 1)[-1] for entry in services[name].get("ports", [])]
    assert published == [str(port)]


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
def test_start_order_waits_for_health(services, name):
    depends = services[name]["depends_on"]
    assert isinstance(depends, dict), "long form, so that conditions are stated"
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["keys"]["condition"] == "service_completed_successfully"
    for callee in CALLS[name]:
        assert depends[callee]["condition"] == "service_healthy"
    for other, rule in depends.items():
        if other in SERVICE_PORTS or other == "postgres":
            assert rule["condition"] == "service_healthy", other
    assert not set(depends) & (set(SERVICE_PORTS) - CALLS[name])


@pytest.mark.parametrize("name", list(SERVICE_PORTS))
def test_environment_is_accepted_by_the_settings_reader(services, name):
    env = {key: str(value) for key, value in services[name]["environment"].items()}
    settings = Settings.from_env({**env, "SKYBRIDGE_HOST": "0.0.0.0"})
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert "@postgres:5432/" in settings.database_url
    assert settings.port(name) == SERVICE_PORTS[name]
    for callee in CALLS[name]:
        assert settings.target(callee) == f"{callee}:{SERVICE_PORTS[callee]}"
    called = {key for key in env if re.fullmatch(r"SKYBRIDGE_[A-Z]+_TARGET", key)}
    assert called == {f"SKYBRIDGE_{callee.upper()}_TARGET" for callee in CALLS[name]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    # One key pair for all, from the volume the one-shot `keys` service fills.
    assert settings.dev_keys is False
    mounts = [str(volume) for volume in services[name]["volumes"]]
    assert "keys:/app/var/keys:ro" in mounts
    for path in (settings.jwt_private_key_path, settings.jwt_public_key_path):
        assert str(path.parent) == "/app/var/keys"


def test_keys_service_creates_the_shared_key_pair_once(services):
    keys = services["keys"]
    assert keys["command"] == [VENV_PYTHON, "-m", "shared.tokens", "init"]
    assert keys["volumes"] == ["keys:/app/var/keys"]
    assert str(keys.get("restart", "no")) == "no"
    env = {key: str(value) for key, value in keys["environment"].items()}
    settings = Settings.from_env(env)
    for name in SERVICE_PORTS:
        theirs = Settings.from_env({k: str(v) for k, v in services[name]["environment"].items()})
        assert theirs.jwt_private_key_path == settings.jwt_private_key_path
        assert theirs.jwt_public_key_path == settings.jwt_public_key_path


def test_postgres_has_a_readiness_check_and_a_named_volume(compose, services):
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:16")
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    volume = postgres["volumes"][0].split(":")[0]
    assert volume in compose["volumes"]
    assert "keys" in compose["volumes"]
    env = postgres["environment"]
    url = services["orbit"]["environment"]["SKYBRIDGE_DATABASE_URL"]
    assert url == (f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
                   f"@postgres:5432/{env['POSTGRES_DB']}")


def test_nothing_runs_as_root(services):
    for name, svc in services.items():
        if "build" in svc:
            assert str(svc.get("user", "skybridge")).split(":")[0] not in ("root", "0"), name


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines()
             if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def test_dockerfile_installs_with_the_makefile_and_runs_as_a_user():
    steps = dockerfile_instructions()
    keywords = [keyword for keyword, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = [args for keyword, args in steps if keyword == "RUN"]
    assert any(re.search(r"apt-get install .*\bmake\b", run) for run in runs)
    assert "make install" in runs
    assert not any("pip install" in run or "pip3 install" in run for run in runs)
    assert re.search(r"^install:", (ROOT / "Makefile").read_text(), re.MULTILINE)
    users = [args for keyword, args in steps if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("CMD")
    assert ("WORKDIR", APP_DIR) in steps
    assert ("ENV", "SKYBRIDGE_HOST=0.0.0.0") in steps
    assert steps[-1] == ("CMD", f'["{VENV_PYTHON}", "-m", "services"]')


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {".venv", "var", "shared/gen", "build", ".git", ".pytest_cache",
            ".ruff_cache"} <= ignored


def test_dockerignore_keeps_tools_tests_and_benchmarks_out_of_the_image():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text()
               .splitlines() if line.strip() and not line.startswith("#")}
    assert {"tools", "tests", "bench", "docs"} <= ignored
    # What the image runs must not need them: no module under services/ or shared/
    # (shared/gen aside) imports tools, tests or bench.
    left_out = ("tools", "tests", "bench")
    for path in [*(ROOT / "services").rglob("*.py"), *(ROOT / "shared").rglob("*.py")]:
        if (ROOT / "shared" / "gen") in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in left_out, f"{path.relative_to(ROOT)} imports {name}"


def test_collector_receives_otlp_and_exports_traces_to_jaeger(services):
    config = load_yaml(COLLECTOR)
    grpc_endpoint = config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc_endpoint.endswith(":4317")
    traces = config["service"]["pipelines"]["traces"]
    assert "otlp" in traces["receivers"]
    to_jaeger = [name for name in traces["exporters"]
                 if name.split("/")[0] == "otlp"
                 and config["exporters"][name]["endpoint"] == "jaeger:4317"]
    assert to_jaeger
    for pipeline in config["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            for component in pipeline.get(kind, []):
                assert component in config[kind], component

    collector = services["otel-collector"]
    assert collector["image"].startswith("otel/opentelemetry-collector-contrib")
    config_arg = next(arg for arg in collector["command"] if arg.startswith("--config="))
    mount = f"./deploy/otel-collector.yaml:{config_arg.removeprefix('--config=')}:ro"
    assert mount in collector["volumes"]
    jaeger = services["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one")
    assert str(jaeger["environment"]["COLLECTOR_OTLP_ENABLED"]) == "true"
    assert any(str(port).endswith(":16686") for port in jaeger["ports"])
