"""`make broker`'s own user: the kit works with it, and it may do nothing else."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, jobkit
from private_broker import PrivateBroker

from jobkit_worker.errors import ExitCode

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]


def _make_user(node: PrivateBroker, env_file: Path, queue: str) -> str:
    """Run the script as `make broker` does; returns the BROKER_URL it wrote."""
    env = {**node.env, "BROKER_URL": node.url, "QUEUE": queue, "BROKER_ENV": str(env_file)}
    made = subprocess.run(
        [str(ROOT / "scripts" / "ensure-broker-user")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,  # bounded: the script waits for a loaded node, and says so
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert f"may use queue '{queue}'" in made.stdout, made.stdout
    assert env_file.stat().st_mode & 0o077 == 0, "the password is readable by others"
    (url,) = [line for line in env_file.read_text().splitlines() if line.startswith("BROKER_URL=")]
    return url.removeprefix("BROKER_URL=")


def test_the_kits_own_user_runs_the_job_in_its_own_vhost(
    private_node: PrivateBroker, env: dict[str, str], tmp_path: Path
) -> None:
    url = _make_user(private_node, tmp_path / "broker.env", env["QUEUE"])
    assert url.startswith("amqp://jobkit:") and url.endswith(
        f"@127.0.0.1:{private_node.port}/jobkit"
    )
    env = {**env, "BROKER_URL": url}
    Path(env["INPUT_URL"], "a.csv").write_text("Datetime,Temperature\n2017-12-01 00:00:00,1\n")

    assert jobkit(env, "publish").returncode == 0
    run = jobkit(env, "run", "--parallelism", "1")

    assert run.returncode == ExitCode.DONE, run.stdout + run.stderr
    assert Path(env["OUTPUT_URL"], "a_aggregated.csv").exists()


def test_the_kits_own_user_may_not_use_another_queue_and_is_told_so(
    private_node: PrivateBroker, env: dict[str, str], tmp_path: Path
) -> None:
    url = _make_user(private_node, tmp_path / "broker.env", env["QUEUE"])

    someone_elses = {**env, "BROKER_URL": url, "QUEUE": "someone-elses", "NO_INPUT": "true"}
    other = jobkit(someone_elses, "publish", "x")

    assert other.returncode == ExitCode.CONFIG
    assert "does not let user 'jobkit' declare queue 'someone-elses'" in other.stderr, other.stderr
    assert "needs the 'configure' permission" in other.stderr
    assert "\n" not in other.stderr.strip()


def test_the_kits_own_user_may_not_enter_other_vhosts(
    private_node: PrivateBroker, env: dict[str, str], tmp_path: Path
) -> None:
    url = _make_user(private_node, tmp_path / "broker.env", env["QUEUE"])

    other = jobkit({**env, "BROKER_URL": url.rsplit("/", 1)[0] + "/%2F"}, "depth")

    assert other.returncode == ExitCode.CONFIG
    assert "denied access to the virtual host" in other.stderr, other.stderr


def test_running_it_again_keeps_the_users_password(
    private_node: PrivateBroker, env: dict[str, str], tmp_path: Path
) -> None:
    env_file = tmp_path / "broker.env"

    assert _make_user(private_node, env_file, env["QUEUE"]) == _make_user(
        private_node, env_file, env["QUEUE"]
    )


def test_granting_another_queue_keeps_the_queues_granted_before(
    private_node: PrivateBroker, env: dict[str, str], tmp_path: Path
) -> None:
    first, second = env["QUEUE"], env["QUEUE"] + "-second"
    env_file = tmp_path / "broker.env"
    _make_user(private_node, env_file, first)
    url = _make_user(private_node, env_file, second)
    _make_user(private_node, env_file, first)  # granted already: changes nothing

    for queue in (first, second):
        depth = jobkit({**env, "BROKER_URL": url, "QUEUE": queue}, "depth")
        assert "does not let user" not in depth.stderr, depth.stderr
    someone_elses = {**env, "BROKER_URL": url, "QUEUE": "someone-elses", "NO_INPUT": "true"}
    other = jobkit(someone_elses, "publish", "x")
    assert "does not let user 'jobkit' declare queue 'someone-elses'" in other.stderr, other.stderr


@pytest.mark.parametrize(
    ("permissions", "command", "refusal"),
    [
        (("", "", ".*"), "depth", None),  # reading the depth of a queue that exists: allowed
        (("", "", ".*"), "publish", "declare queue '{queue}': it needs the 'configure'"),
        ((".*", "", ".*"), "publish", "publish to queue '{queue}': it needs the 'write'"),
        ((".*", ".*", ""), "purge", "purge queue '{queue}': it needs the 'read'"),
    ],
    ids=["read-only depth", "no configure", "no write", "no read"],
)
def test_a_refusal_names_the_operation_the_queue_and_the_missing_permission(
    private_node: PrivateBroker,
    env: dict[str, str],
    permissions: tuple[str, str, str],
    command: str,
    refusal: str | None,
) -> None:
    queue = env["QUEUE"]
    as_guest = {**env, "BROKER_URL": private_node.url}
    assert jobkit({**as_guest, "NO_INPUT": "true"}, "publish", "x").returncode == 0  # made
    user = f"limited-{abs(hash(permissions)) % 10_000}"
    private_node.ctl("add_user", user, "secret")
    private_node.ctl("set_permissions", "-p", "/", user, *permissions)
    limited = {**env, "BROKER_URL": f"amqp://{user}:secret@127.0.0.1:{private_node.port}/%2F"}
    limited["NO_INPUT"] = "true"

    arguments = {"publish": ["one"], "purge": ["--yes"]}.get(command, [])
    result = jobkit(limited, command, *arguments)
    private_node.ctl("delete_user", user)

    if refusal is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert f"does not let user '{user}' {refusal.format(queue=queue)}" in result.stderr, (
        result.stderr
    )
