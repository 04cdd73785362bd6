"""A private RabbitMQ node on its own ports, for tests that stop, kill or reconfigure a broker.

The shared broker at BROKER_URL is never touched by these tests. Nodes run Debian's
rabbitmq-server, or the one in the root JOBKIT_RABBITMQ_ROOT names (scripts/rabbitmq4-root:
RabbitMQ 4), through chroot.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_SECONDS = 90
# A root of another RabbitMQ version; its nodes share an epmd of their own on this port.
ROOT = Path(os.environ["JOBKIT_RABBITMQ_ROOT"]) if os.environ.get("JOBKIT_RABBITMQ_ROOT") else None
ROOT_EPMD_PORT = 4371


# Below Linux's ephemeral range (32768 on): a port the system hands out to no outgoing
# connection between its choice here and the node's start, or its restart.
_PORTS = range(20000, 32000)


def free_port() -> int:
    """A loopback port nothing listens on, outside the ephemeral range."""
    while True:
        port = random.choice(_PORTS)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


class PrivateBroker:
    """One rabbitmq-server node under a fresh directory; `config` lines go into rabbitmq.conf,
    `advanced` (Erlang terms) into advanced.config."""

    def __init__(self, config: list[str] | None = None, advanced: str = "[].") -> None:
        # set before configure(), which names the listener's port
        self.port = free_port()
        self.root = ROOT
        tmp = Path("/var/tmp") if ROOT is None else ROOT / "var" / "tmp"
        self.directory = Path(tempfile.mkdtemp(prefix="jobkit-node-", dir=tmp))
        self.directory.chmod(0o777)  # the node runs as user rabbitmq
        # The directory as the node sees it: inside its root, if it has one.
        seen = self.directory if ROOT is None else Path("/", self.directory.relative_to(ROOT))
        self.node = f"jobkit-test-{self.port}@localhost"
        self.configure(config or [])
        (self.directory / "rabbitmq-env.conf").write_text("")
        (self.directory / "advanced.config").write_text(advanced + "\n")
        self.env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_BASE": str(seen),
            "RABBITMQ_MNESIA_BASE": str(seen / "mnesia"),
            "RABBITMQ_LOG_BASE": str(seen / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(seen / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(seen / "pid"),
            "RABBITMQ_CONFIG_FILE": str(seen / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(seen / "rabbitmq-env.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(seen / "advanced.config"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if ROOT is not None:  # its own cookie and epmd, apart from the system's nodes
            self.env |= {"HOME": str(seen), "ERL_EPMD_PORT": str(ROOT_EPMD_PORT)}
        self._pid_file = seen / "pid"

    def configure(self, lines: list[str]) -> None:
        """Write rabbitmq.conf: the private listener plus `lines`; takes effect at start."""
        listener = f"listeners.tcp.local = 127.0.0.1:{self.port}"
        (self.directory / "rabbitmq.conf").write_text("\n".join([listener, *lines]) + "\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> None:
        """Start the node and wait until it accepts connections."""
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        """Start the node, without waiting for it."""
        subprocess.run(
            [*self._inside(), "rabbitmq-server", "-detached"], env=self.env, check=True, timeout=60
        )

    def wait_started(self) -> None:
        """Wait until the launched node accepts connections."""
        try:
            self.ctl("wait", str(self._pid_file), "--timeout", str(START_SECONDS))
        except subprocess.SubprocessError as exc:
            raise RuntimeError(
                f"private broker {self.node} did not start: {self._log_tail()}"
            ) from exc
        deadline = time.monotonic() + 30
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError(f"private broker on {self.port} does not answer")
            time.sleep(0.2)

    def _log_tail(self, lines: int = 15) -> str:
        """The last lines of the node's logs, for a start that failed."""
        logs = sorted((self.directory / "log").glob("*.log"))
        return (
            "\n".join(
                f"{path.name}: {line}"
                for path in logs
                for line in path.read_text(errors="replace").splitlines()[-lines:]
            )
            or "no log"
        )

    def join(self, seed: PrivateBroker) -> None:
        """Make this running node a member of `seed`'s cluster (it forgets its own data)."""
        self.ctl("stop_app")
        self.ctl("join_cluster", seed.node)
        self.ctl("start_app")

    def stop(self) -> None:
        """Stop the node cleanly."""
        self.ctl("stop", str(self._pid_file))

    def kill(self) -> None:
        """Kill the node's Erlang VM at once, as a crash would."""
        pid = int((self.directory / "pid").read_text().strip())
        os.kill(pid, 9)
        while self.answers():
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def remove(self) -> None:
        """Stop the node if it runs and delete its directory."""
        if self.answers():
            try:
                self.stop()
            except subprocess.SubprocessError:
                self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _inside(self) -> list[str]:
        """The command's prefix that runs it in the node's root."""
        return [] if self.root is None else ["chroot", str(self.root)]

    def ctl(self, *args: str) -> str:
        return subprocess.run(
            [*self._inside(), "rabbitmqctl", "-n", self.node, "-q", *args],
            env=self.env,
            check=True,
            timeout=START_SECONDS + 30,
            capture_output=True,
            text=True,
        ).stdout


class PrivateCluster:
    """Private nodes joined into one cluster (the first is the seed), for tests that lose one."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [PrivateBroker() for _ in range(size)]

    @property
    def url(self) -> str:
        """BROKER_URL naming every node, the first first."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:  # side by side: a node's start is mostly waiting
            node.launch()
        for node in self.nodes:
            node.wait_started()
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.join(seed)

    def leader(self, queue: str) -> PrivateBroker:
        """The node that leads quorum queue `queue`, as a surviving node sees it."""
        asker = next(node for node in self.nodes if node.answers())
        listing = json.loads(asker.ctl("list_queues", "name", "leader", "--formatter", "json"))
        leader = next(row["leader"] for row in listing if row["name"] == queue)
        return next(node for node in self.nodes if node.node == leader)

    def remove(self) -> None:
        for node in reversed(self.nodes):
            node.remove()


def main(argv: list[str]) -> int:
    """`python tests/private_broker.py COMMAND...`: run COMMAND with BROKER_URL naming a
    private node of its own (RabbitMQ 4 with JOBKIT_RABBITMQ_ROOT), removed afterwards."""
    node = PrivateBroker()
    try:
        node.start()
        version = node.ctl("eval", "rabbit_misc:version().").strip().strip('"')
        print(f"RabbitMQ {version} on 127.0.0.1:{node.port}", flush=True)
        return subprocess.run(argv, env={**os.environ, "BROKER_URL": node.url}).returncode
    finally:
        node.remove()


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
