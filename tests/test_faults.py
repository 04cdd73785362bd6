"""Faults: brokers that start late, restart mid-run or present untrusted certificates; items that
fail after the other workers have found the queue empty. Private brokers only; bounded in time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import failing_once, jobkit, settled_depths, worker
from private_broker import PrivateBroker, free_port

from jobkit_worker.builtin.aggregate import aggregate_csv
from jobkit_worker.errors import ExitCode

pytestmark = [pytest.mark.rabbitmq, pytest.mark.slow]


@pytest.fixture
def private_broker() -> Iterator[PrivateBroker]:
    """A private RabbitMQ node, stopped and removed afterwards."""
    broker = PrivateBroker()
    yield broker
    broker.remove()


def test_a_worker_waits_for_a_broker_that_is_still_starting(
    env: dict[str, str], private_broker: PrivateBroker
) -> None:
    late = {**env, "BROKER_URL": private_broker.url, "BROKER_RETRY_SECONDS": "90"}
    process = subprocess.Popen(
        [sys.executable, "-m", "jobkit_worker"],
        env=late,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(1)
    private_broker.start()

    stdout, stderr = process.communicate(timeout=120)

    assert process.returncode == 0, stderr
    assert b"connection refused; retrying in" in stderr
    assert json.loads(stdout)["outcome"] == "empty"


def test_a_broker_restart_in_the_middle_of_a_run_loses_nothing(
    env: dict[str, str], private_broker: PrivateBroker
) -> None:
    private_broker.start()
    job = {**env, "BROKER_URL": private_broker.url, "BROKER_RETRY_SECONDS": "120"}
    assert jobkit(job, "data", "--files", "10", "--rows", "200000").returncode == 0
    assert jobkit(job, "publish").returncode == 0
    run = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "jobkit"),
            "run",
            "--json",
            "--parallelism",
            "2",
            "--backoff-limit",
            "20",
        ],
        env=job,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    outputs = Path(job["OUTPUT_URL"])
    deadline = time.monotonic() + 120
    while len(list(outputs.glob("*_aggregated.csv"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    private_broker.stop()
    private_broker.start()

    stdout, stderr = run.communicate(timeout=300)

    assert run.returncode == 0, stdout + stderr
    report = json.loads(stdout)
    # An item stored before the restart whose ack was lost is acked on redelivery, not redone.
    settled = set(report["done"]) | set(report["already_done"])
    assert settled == {f"temperature{i}.csv" for i in range(1, 11)}, report
    assert len(report["done"]) == len(set(report["done"])), "no item was done twice"
    for i in range(1, 11):
        source = Path(job["INPUT_URL"], f"temperature{i}.csv").read_bytes()
        assert (outputs / f"temperature{i}_aggregated.csv").read_bytes() == aggregate_csv(source)
    assert settled_depths(private_broker.url, job["QUEUE"], (0, 0)) == (0, 0)


def test_an_item_failing_after_the_others_found_the_queue_empty_is_still_done(
    env: dict[str, str],
) -> None:
    Path(env["INPUT_URL"], "late.csv").write_text("Datetime,Temperature\n2017-12-01 00:00:00,1\n")
    assert jobkit(env, "publish", "late.csv").returncode == 0
    state = Path("fail-once")
    env = failing_once(env, state, "late.csv")
    (state / "wait").touch()  # the first attempt fails once two other workers found nothing
    helper = threading.Thread(target=_go_when_logged, args=(state, "is empty; nothing to do", 2))
    helper.start()
    result = jobkit(env, "run", "--json", "--parallelism", "4", "--completions", "3")
    helper.join()

    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["done"] == ["late.csv"]
    assert len(report["failures"]) == 1
    assert report["empty"] >= 2, "other workers found the queue empty meanwhile"
    assert Path(env["OUTPUT_URL"], "late_aggregated.csv").read_text().startswith("Datetime,mean")


def _go_when_logged(state: Path, text: str, times: int) -> None:
    """Make the file `go` in `state` once the run's log holds `text` `times` times."""
    log, deadline = Path(".jobkit/run.log"), time.monotonic() + 60
    while time.monotonic() < deadline:
        if log.exists() and log.read_text().count(text) >= times:
            (state / "go").touch()
            return
        time.sleep(0.02)


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost signed by it: (ca, cert, key)."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    openssl = ["openssl"]
    run = lambda *args: subprocess.run([*openssl, *args], check=True, capture_output=True)  # noqa: E731
    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=jobkit test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca),
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(extensions),
        "-out",
        str(cert),
    )
    for path in directory.iterdir():
        path.chmod(0o644)  # the node runs as user rabbitmq
    return ca, cert, key


def test_amqps_connects_with_the_ca_and_refuses_an_untrusted_certificate(
    env: dict[str, str],
) -> None:
    tls_port = free_port()
    broker = PrivateBroker()
    ca, cert, key = _certificates(broker.directory)
    broker.configure(
        [
            f"listeners.ssl.default = {tls_port}",
            f"ssl_options.cacertfile = {ca}",
            f"ssl_options.certfile = {cert}",
            f"ssl_options.keyfile = {key}",
            "ssl_options.verify = verify_none",
            "ssl_options.fail_if_no_peer_cert = false",
        ]
    )
    try:
        broker.start()
        tls = {**env, "BROKER_URL": f"amqps://guest:guest@localhost:{tls_port}/%2F"}

        trusted = worker({**tls, "BROKER_CA_FILE": str(ca)})
        untrusted = worker({**tls, "BROKER_RETRY_SECONDS": "30"})
    finally:
        broker.remove()

    assert trusted.returncode == 0, trusted.stderr
    assert untrusted.returncode == ExitCode.CONFIG
    assert "certificate not trusted" in untrusted.stderr and "BROKER_CA_FILE" in untrusted.stderr
    assert "retrying" not in untrusted.stderr, "a certificate that is not trusted is not retried"


def test_workers_killed_at_random_moments_lose_nothing_and_corrupt_nothing() -> None:
    from chaos import run_chaos

    result = run_chaos(items=20, kills=8, restarts=0, rows=200_000, seed=7)

    assert result.kills >= 2, result.line()
    assert (result.lost, result.corrupt) == (0, 0), result.line()
    assert result.done + result.dead_lettered >= result.items, result.line()
