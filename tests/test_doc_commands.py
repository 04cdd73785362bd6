"""Every shell command the README and docs/ show is run here, so that none goes stale.

Commands are the `$ ` lines of ```console blocks (a line ending in `\\` goes on); lines without
`$ ` after a command are what it prints, and must be in its output. `# exits N` after a command
is the exit status it must end with; any other command must exit 0. Each block runs in one
shell, in a directory of its own that holds the repository's files (`examples/` and the
Makefile among them) and the `# NAME.py` files its page's Python blocks show, with a queue of
its own and a broker the tests use. Two kinds are run as a dry run (`make -n`), which checks
that their targets and variables exist: those that need docker or a Kubernetes cluster, which
this machine has not. `make test` is what CI runs (a test below keeps it so).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pytest
from conftest import AZURITE_CONNECTION_STRING, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# What a command needs that this machine has not: such a make command runs as `make -n`.
NEEDS_A_CLUSTER = re.compile(r"\b(image|push|kind-up|kind-load|deploy-broker|RUNNER=kube)\b")
CI_COMMAND = "make test"  # run by CI itself, not from within the suite it runs
SLOW = re.compile(r"^make demo$|pip install", re.MULTILINE)
_FENCE = re.compile(r"^```(\w*)\s*$")
_EXITS = re.compile(r"\s+# exits (\d+)$")


@dataclass
class Command:
    line: str
    exits: int = 0
    prints: list[str] = field(default_factory=list)


@dataclass
class Block:
    page: str
    number: int
    commands: list[Command]

    @property
    def name(self) -> str:
        return f"{self.page}#{self.number}"


def _blocks(page: Path) -> tuple[list[Block], dict[str, str]]:
    """The page's console blocks, and the files its Python blocks show (`# NAME.py` first)."""
    blocks: list[Block] = []
    files: dict[str, str] = {}
    language, body = None, []
    for line in page.read_text().splitlines():
        fence = _FENCE.match(line)
        if fence and language is None:
            language, body = fence.group(1), []
        elif line.startswith("```") and language is not None:
            if language == "console":
                blocks.append(Block(page.name, len(blocks) + 1, _commands(body)))
            elif language == "python" and (named := re.match(r"# (\w+\.py)\b", body[0])):
                files[named.group(1)] = "\n".join(body) + "\n"
            language = None
        elif language is not None:
            body.append(line)
    return blocks, files


def _commands(lines: list[str]) -> list[Command]:
    commands: list[Command] = []
    going_on = False
    for line in lines:
        if going_on:
            commands[-1].line += "\n" + line
        elif line.startswith("$ "):
            commands.append(Command(line[2:]))
        elif commands and line.strip():
            commands[-1].prints.append(line)
        going_on = line.endswith("\\")
        if not going_on and commands and (exits := _EXITS.search(commands[-1].line)):
            commands[-1].exits = int(exits.group(1))
    return commands


ALL = {page: _blocks(page) for page in PAGES}
BLOCKS = [block for blocks, _ in ALL.values() for block in blocks]


def test_every_shell_command_shown_is_in_a_console_block_this_file_runs() -> None:
    for page in PAGES:
        shells = re.findall(r"^```(sh|bash|shell|zsh)\s*$", page.read_text(), re.MULTILINE)
        assert shells == [], f"{page.name}: show commands as ```console with '$ '"
    assert len(BLOCKS) >= 10


def test_the_readme_s_test_command_is_what_ci_runs() -> None:
    (first, *_) = [block for block in BLOCKS if block.page == "README.md"]
    assert [command.line for command in first.commands] == ["make demo", "make test"]
    assert (ROOT / ".ci/run").read_text().strip().endswith("make test")


def _sandbox(tmp_path: Path, files: dict[str, str]) -> Path:
    """A directory like a checkout, whose virtualenv is the suite's (kept up to date: make
    sees pyproject.toml no newer than it)."""
    here = tmp_path / "checkout"
    here.mkdir()
    for name in ("Makefile", "pyproject.toml", "README.md", "LICENSE", "examples", "images",
                 "manifests", "scripts", "worker", "publisher", ".venv"):  # fmt: skip
        (here / name).symlink_to(ROOT / name)
    for name, text in files.items():
        (here / name).write_text(text)
    return here


def _delete_queues(broker_url: str, names: set[str]) -> None:
    """Delete the queues a page uses, before (as a new user's broker would have none) and
    after (leaving nothing behind)."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    channel = connection.channel()
    for name in names:
        for queue in (name, f"{name}.dead"):
            channel.queue_delete(queue)
    connection.close()


def _script(blocks: list[Block], results: Path) -> str:
    """A shell script of the blocks' commands, each block in a subshell of its own (what it
    exports ends with it), each command's output and status kept in `results`."""
    lines, number = [], 0
    for block in blocks:
        lines.append("(")
        for command in block.commands:
            line = _EXITS.sub("", command.line)
            if line == CI_COMMAND:
                line = "true"
            elif line.startswith("make ") and NEEDS_A_CLUSTER.search(line):
                line = "make -n " + line.removeprefix("make ")
            out, err, rc = (results / f"{number}.{kind}" for kind in ("out", "err", "rc"))
            lines.append(f"{{ {line}\n}} > {out} 2> {err}; echo $? > {rc}")
            number += 1
        lines.append(")")
    return "\n".join(lines) + "\n"


def _text(page: Path) -> str:
    return "\n".join(command.line for block in ALL[page][0] for command in block.commands)


@pytest.mark.rabbitmq
@pytest.mark.parametrize(
    "page",
    [
        pytest.param(page, id=page.name, marks=[pytest.mark.slow] * bool(SLOW.search(_text(page))))
        for page in PAGES
        if ALL[page][0]
    ],
)
def test_the_commands_of_the_page_run_as_shown(
    page: Path, tmp_path: Path, broker_url: str, request: pytest.FixtureRequest
) -> None:
    blocks, files = ALL[page]
    here = _sandbox(tmp_path, files)
    text = _text(page)
    containers = set(re.findall(r"az://([a-z0-9-]+)", text))
    if containers:
        request.getfixturevalue("azurite")
    queue = f"docs-{uuid.uuid4().hex[:12]}"
    queues = {queue, *re.findall(r"\bQUEUE=([\w.-]+)", text)}

    def clean() -> None:
        _empty_containers(containers)
        _delete_queues(broker_url, queues)

    clean()
    request.addfinalizer(clean)
    results = tmp_path / "results"
    results.mkdir()
    bin_dir = Path(sys.executable).parent
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("MAKE")},
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
        "BROKER_URL": broker_url,
        "QUEUE": queue,
        "AZURE_STORAGE_CONNECTION_STRING": AZURITE_CONNECTION_STRING,
        "NEW_QUEUE_WAIT_SECONDS": "0",
        "FILES": "2",  # make data's: a small batch
        "ROWS": "1440",
        "COLUMNS": "100",
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache/pip")),
    }
    for name in ("INPUT_URL", "OUTPUT_URL", "TASK", "TASK_COMMAND", "NO_INPUT"):
        env.pop(name, None)
    commands = [command for block in blocks for command in block.commands]

    subprocess.run(
        ["bash", "-c", _script(blocks, results)], cwd=here, env=env, timeout=900, check=True
    )

    for number, command in enumerate(commands):
        rc = int((results / f"{number}.rc").read_text())
        out = (results / f"{number}.out").read_text()
        said = f"$ {command.line}\n{out}{(results / f'{number}.err').read_text()}"
        assert rc == command.exits, f"exit {rc}, not {command.exits}:\n{said}"
        for printed in command.prints:
            assert printed in out, f"{printed!r} not printed:\n{said}"


def _empty_containers(names: set[str]) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
    for name in set(names):
        container = service.get_container_client(name)
        if container.exists():
            for blob in container.list_blob_names():
                container.delete_blob(blob)
