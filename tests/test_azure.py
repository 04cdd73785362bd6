"""Azure Blob Storage in and out, against a real Azurite with the real SDK."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ResourceTypes,
    generate_account_sas,
)
from conftest import (
    AZURITE_ACCOUNT,
    AZURITE_ENDPOINT,
    AZURITE_KEY,
    jobkit,
    read_depths,
    settled_depths,
    worker,
)
from flaky_proxy import FlakyProxy

from jobkit_worker.errors import ExitCode

pytestmark = [pytest.mark.azurite, pytest.mark.rabbitmq]


@pytest.fixture
def container(azurite: str) -> Iterator[ContainerClient]:
    """A fresh container, deleted afterwards."""
    client = BlobServiceClient.from_connection_string(azurite).get_container_client(
        f"test-{uuid.uuid4().hex[:12]}"
    )
    client.create_container()
    yield client
    client.delete_container()


@pytest.fixture
def azure_env(env: dict[str, str], azurite: str, container: ContainerClient) -> dict[str, str]:
    """A job whose inputs and outputs live in the container, reached by connection string."""
    return {
        **env,
        "AZURE_STORAGE_CONNECTION_STRING": azurite,
        "INPUT_URL": f"az://{container.container_name}/in",
        "OUTPUT_URL": f"az://{container.container_name}/out",
    }


@pytest.fixture
def credentials_env(azure_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The same job reached through the AKS blog's azure_credentials.json instead."""
    path = tmp_path / "azure_credentials.json"
    path.write_text(json.dumps({"storage_account": AZURITE_ACCOUNT, "account_key": AZURITE_KEY}))
    env = {**azure_env, "AZURE_CREDENTIALS_PATH": str(path)}
    env["AZURE_STORAGE_BLOB_ENDPOINT"] = AZURITE_ENDPOINT
    del env["AZURE_STORAGE_CONNECTION_STRING"]
    return env


def _upload_samples(env: dict[str, str], samples: Path, files: int = 6) -> None:
    made = jobkit(env, "data", "--files", str(files), "--rows", "3000", "--out", str(samples))
    assert made.returncode == 0, made.stderr
    uploaded = jobkit(env, "upload", str(samples), env["INPUT_URL"])
    assert uploaded.returncode == 0, uploaded.stderr
    assert f"Uploaded {files} files" in uploaded.stdout


def _blob(container: ContainerClient, name: str) -> bytes:
    return bytes(container.download_blob(name).readall())


def test_the_job_through_azurite_writes_the_same_bytes_as_the_local_path(
    azure_env: dict[str, str], container: ContainerClient, tmp_path: Path
) -> None:
    samples = tmp_path / "samples"
    _upload_samples(azure_env, samples)
    published = jobkit(azure_env, "publish")
    assert "Published 6 items" in published.stdout, published.stderr

    through_azure = jobkit(azure_env, "run", "--parallelism", "3", "--json")
    assert through_azure.returncode == 0, through_azure.stdout

    local = {**azure_env, "INPUT_URL": str(samples), "OUTPUT_URL": str(tmp_path / "local-out")}
    assert jobkit(local, "publish").returncode == 0
    through_disk = jobkit(local, "run", "--parallelism", "3")
    assert through_disk.returncode == 0, through_disk.stdout

    for i in range(1, 7):
        name = f"temperature{i}_aggregated.csv"
        assert _blob(container, f"out/{name}") == (tmp_path / "local-out" / name).read_bytes()
    assert settled_depths(azure_env["BROKER_URL"], azure_env["QUEUE"], (0, 0)) == (0, 0)


def test_upload_skips_blobs_whose_content_is_already_there(
    azure_env: dict[str, str], tmp_path: Path
) -> None:
    samples = tmp_path / "samples"
    _upload_samples(azure_env, samples, files=3)
    (samples / "temperature2.csv").write_text("Datetime,Temperature\n")

    again = jobkit(azure_env, "upload", str(samples), azure_env["INPUT_URL"])

    assert again.returncode == 0, again.stderr
    assert "Uploaded 1 files" in again.stdout and "2 were already there" in again.stdout


def test_seed_000s_credentials_file_works(
    credentials_env: dict[str, str], container: ContainerClient
) -> None:
    container.upload_blob("in/t.csv", b"Datetime,Temperature\n2017-12-01 00:00:00,3.5\n")
    assert jobkit(credentials_env, "publish").returncode == 0

    result = worker(credentials_env)

    assert result.returncode == 0, result.stderr
    assert _blob(container, "out/t_aggregated.csv") == (
        b"Datetime,mean,std,max,min\n2017-12-01 00:00:00,3.5,,3.5,3.5\n"
    )


def test_a_wrong_key_exits_2_naming_account_and_container_but_not_the_key(
    credentials_env: dict[str, str], container: ContainerClient, tmp_path: Path
) -> None:
    wrong_key = "A" * 86 + "=="
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps({"storage_account": AZURITE_ACCOUNT, "account_key": wrong_key}))
    jobkit(credentials_env, "publish", "t.csv")

    result = worker({**credentials_env, "AZURE_CREDENTIALS_PATH": str(path)})

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert (
        f"Azure refused access to container '{container.container_name}' of account "
        f"'{AZURITE_ACCOUNT}'"
    ) in result.stderr
    assert wrong_key not in result.stderr + result.stdout
    assert settled_depths(credentials_env["BROKER_URL"], credentials_env["QUEUE"], (1, 0)) == (1, 0)


def test_a_missing_container_exits_2_before_any_message_is_taken(
    azure_env: dict[str, str],
) -> None:
    jobkit(azure_env, "publish", "t.csv")
    result = worker({**azure_env, "INPUT_URL": "az://no-such-container/in"})
    assert result.returncode == ExitCode.CONFIG
    assert (
        f"There is no container 'no-such-container' of account '{AZURITE_ACCOUNT}'" in result.stderr
    )
    assert settled_depths(azure_env["BROKER_URL"], azure_env["QUEUE"], (1, 0)) == (1, 0)


def test_a_missing_blob_is_dead_lettered_and_the_others_are_done(
    azure_env: dict[str, str], container: ContainerClient, tmp_path: Path
) -> None:
    _upload_samples(azure_env, tmp_path / "samples", files=2)
    assert (
        jobkit(azure_env, "publish", "temperature1.csv", "ghost.csv", "temperature2.csv").returncode
        == 0
    )

    result = jobkit(azure_env, "run", "--parallelism", "2", "--json")

    report = json.loads(result.stdout)
    assert result.returncode == ExitCode.DEAD, report
    assert sorted(report["done"]) == ["temperature1.csv", "temperature2.csv"]
    assert [dead["item"] for dead in report["dead"]] == ["ghost.csv"]
    assert report["dead"][0]["reason"].startswith(
        f"ghost.csv: no such blob in az://{container.container_name}/in"
    )


def test_the_key_never_appears_in_logs_reports_or_help(
    azure_env: dict[str, str], container: ContainerClient, tmp_path: Path
) -> None:
    debug = {**azure_env, "LOG_LEVEL": "DEBUG"}
    container.upload_blob("in/t.csv", b"Datetime,Temperature\n2017-12-01 00:00:00,1\n")
    jobkit(debug, "publish", "t.csv", "ghost.csv")
    outputs = [
        jobkit(debug, "run", "--parallelism", "1"),
        jobkit(debug, "status"),
        jobkit(debug, "--help"),
        worker({**debug, "AZURE_STORAGE_CONNECTION_STRING": "AccountKey=" + AZURITE_KEY}),
    ]
    text = "".join(result.stdout + result.stderr for result in outputs)
    text += (tmp_path / ".jobkit" / "run.log").read_text()
    assert "took t.csv" in text, "the workers' logs were captured"
    assert AZURITE_KEY not in text
    assert AZURITE_KEY[:20] not in text


def test_an_unknown_account_exits_2_naming_it(
    credentials_env: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"storage_account": "nosuchaccount", "account_key": AZURITE_KEY}))
    jobkit(credentials_env, "publish", "t.csv")
    unknown = {
        **credentials_env,
        "AZURE_CREDENTIALS_PATH": str(path),
        "AZURE_STORAGE_BLOB_ENDPOINT": "http://127.0.0.1:10000/nosuchaccount",
    }

    result = worker(unknown)

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert "of account 'nosuchaccount'" in result.stderr
    assert settled_depths(credentials_env["BROKER_URL"], credentials_env["QUEUE"], (1, 0)) == (1, 0)


def test_a_container_the_credentials_may_only_read_exits_2_before_any_message_is_taken(
    azure_env: dict[str, str], container: ContainerClient
) -> None:
    read_only = generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, list=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    env = {
        **azure_env,
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"BlobEndpoint={AZURITE_ENDPOINT};SharedAccessSignature={read_only}"
        ),
    }
    container.upload_blob("in/t.csv", b"Datetime,Temperature\n2017-12-01 00:00:00,1\n")
    jobkit(azure_env, "publish", "t.csv")

    result = worker(env)

    assert result.returncode == ExitCode.CONFIG, result.stderr
    assert f"Azure refused access to container '{container.container_name}'" in result.stderr
    assert settled_depths(azure_env["BROKER_URL"], azure_env["QUEUE"], (1, 0)) == (1, 0)


def test_a_token_that_may_not_list_ends_a_finished_run_with_its_own_count_and_one_warning(
    azure_env: dict[str, str], container: ContainerClient, tmp_path: Path
) -> None:
    no_list = generate_account_sas(
        AZURITE_ACCOUNT,
        AZURITE_KEY,
        ResourceTypes(container=True, object=True),
        AccountSasPermissions(read=True, write=True, create=True, add=True, delete=True),
        expiry=datetime.now(UTC) + timedelta(hours=1),
    )
    env = {
        **azure_env,
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"BlobEndpoint={AZURITE_ENDPOINT};SharedAccessSignature={no_list}"
        ),
    }
    _upload_samples(azure_env, tmp_path / "samples", files=3)
    assert jobkit(azure_env, "publish").returncode == 0

    run = jobkit(env, "run", "--parallelism", "2", "--report")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 done" in run.stdout, run.stdout
    reconciled, reported = [line for line in run.stderr.splitlines() if "for list" in line]
    assert reconciled.startswith("warning: the batch cannot be reconciled"), reconciled
    assert reported.startswith("warning: the report cannot be written"), reported
    assert Path(".jobkit", f"last-run-{env['QUEUE']}.json").exists()


def test_on_azure_a_second_items_result_of_the_same_name_is_refused_and_status_checks_digests(
    azure_env: dict[str, str], container: ContainerClient
) -> None:
    readings = "Datetime,Temperature\n2017-12-01 00:00:00,{}\n"
    for name, value in (("x.csv", 1.0), ("x.CSV", 2.0)):
        container.upload_blob(f"in/{name}", readings.format(value).encode())
    assert jobkit(azure_env, "publish", "x.csv", "x.CSV").returncode == 0

    run = jobkit(azure_env, "run", "--parallelism", "1")

    assert run.returncode == ExitCode.DEAD, run.stdout
    assert b",1.0," in _blob(container, "out/x_aggregated.csv")
    assert "All accounted for: 2 published, 1 done, 1 dead-lettered" in run.stdout, run.stdout
    assert "all 1 outputs checked by digest" in run.stdout, run.stdout
    container.upload_blob("out/x_aggregated.csv", b"replaced\n", overwrite=True)
    status = jobkit(azure_env, "status")
    assert "x.csv: its output x_aggregated.csv changed after it was stored" in status.stdout


def test_on_azure_two_publishes_of_the_same_names_at_once_queue_each_once(
    azure_env: dict[str, str],
) -> None:
    env = {**azure_env, "NO_INPUT": "true"}
    names = "\n".join(f"item{index:04d}" for index in range(2_000))
    both = [
        subprocess.Popen(
            [str(Path(sys.executable).parent / "jobkit"), "publish", "--from", "-"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for process in both:  # both read their names before either publishes
        assert process.stdin is not None
        process.stdin.write(names)
        process.stdin.close()
    outputs = [process.stdout.read() for process in both if process.stdout is not None]
    assert [process.wait(timeout=120) for process in both] == [0, 0]

    assert "".join(outputs).count("Published 2000 items") == 1, outputs
    assert read_depths(env["BROKER_URL"], env["QUEUE"])[0] == 2_000


def test_on_azure_a_changed_input_blob_is_stale_by_its_listed_md5_and_one_uploaded_again_is_not(
    azure_env: dict[str, str], container: ContainerClient
) -> None:
    first, second = (
        f"Datetime,Temperature\n2017-12-01 00:00:00,{value}\n".encode() for value in (1, 2)
    )
    for name in ("a.csv", "b.csv"):
        container.upload_blob(f"in/{name}", first)  # as another tool would, no MD5 given
    assert jobkit(azure_env, "publish").returncode == 0
    assert jobkit(azure_env, "run").returncode == 0
    record = json.loads(_blob(container, "out/a.csv.done.json"))
    assert record["input_md5"] and record["input_version"], record

    container.upload_blob("in/a.csv", second, overwrite=True)  # changed
    container.upload_blob("in/b.csv", first, overwrite=True)  # a new ETag, the same bytes
    published = jobkit(azure_env, "publish", "--json")

    assert published.returncode == 0, published.stderr
    result = json.loads(published.stdout)
    assert (result["confirmed"], result["done"], list(result["redone"])) == (
        1,
        ["b.csv"],
        ["a.csv"],
    )


@pytest.mark.parametrize(
    ("status", "retry_after"),
    [(503, None), (429, 1), (0, None)],
    ids=["503 on one request in three", "429 with Retry-After", "one connection in five dropped"],
)
def test_throttled_or_flaky_storage_is_retried_promptly_and_said_never_dead_lettered(
    azure_env: dict[str, str], tmp_path: Path, status: int, retry_after: int | None
) -> None:
    _upload_samples(azure_env, tmp_path / "samples", files=8)
    assert jobkit(azure_env, "publish").returncode == 0
    proxy = FlakyProxy(("127.0.0.1", 10000), 5 if status == 0 else 3, status, retry_after)
    endpoint = f"http://127.0.0.1:{proxy.port}/{AZURITE_ACCOUNT}"
    flaky = {
        **azure_env,
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        ),
    }
    try:
        run = jobkit(flaky, "run", "--parallelism", "2", "--drain", "--json", timeout=240)
    finally:
        proxy.close()

    assert proxy.faults >= 8, "the proxy did throttle"
    report = json.loads(run.stdout)
    assert run.returncode == 0, run.stderr
    assert (len(report["done"]), report["dead"]) == (8, []), report
    assert report["reconciliation"]["adds_up"] is True
    said = Path(".jobkit/run.log").read_text()
    assert "Azure" in said and "retrying in" in said, said[-2000:]


def test_storage_throttled_past_every_retry_gives_the_item_back_without_spending_a_delivery(
    azure_env: dict[str, str], tmp_path: Path
) -> None:
    _upload_samples(azure_env, tmp_path / "samples", files=1)
    assert jobkit(azure_env, "publish").returncode == 0
    proxy = FlakyProxy(("127.0.0.1", 10000), 1, 503, retry_after=1, only="/in/")
    endpoint = f"http://127.0.0.1:{proxy.port}/{AZURITE_ACCOUNT}"
    throttled = {
        **azure_env,
        "AZURE_STORAGE_CONNECTION_STRING": (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        ),
    }
    try:
        result = worker(throttled, timeout=120)
    finally:
        proxy.close()

    assert result.returncode == ExitCode.RETRY, result.stderr
    assert "Azure answered 503" in result.stderr and "retrying in 1.0 s" in result.stderr
    assert "spending no delivery" in result.stdout, result.stdout
    assert settled_depths(azure_env["BROKER_URL"], azure_env["QUEUE"], (1, 0)) == (1, 0)
    connection = pika.BlockingConnection(pika.URLParameters(azure_env["BROKER_URL"]))
    method, properties, _ = connection.channel().basic_get(azure_env["QUEUE"], auto_ack=False)
    connection.close()
    assert method is not None
    assert int((properties.headers or {}).get("x-delivery-count", 0)) == 0


def test_a_programs_output_larger_than_a_block_is_stored_whole_with_its_digest(
    azure_env: dict[str, str], container: ContainerClient
) -> None:
    size = 20 * 1024 * 1024 + 3  # two blocks and a part
    env = {**azure_env, "NO_INPUT": "true"}
    assert jobkit(env, "publish", "--from", "-", stdin="big\n").returncode == 0
    command = f"sh -c 'head -c {size} /dev/urandom > {{output_dir}}/{{item}}.bin'"

    result = worker({**env, "TASK_COMMAND": command})

    assert result.returncode == ExitCode.DONE, result.stderr
    stored = container.get_blob_client("out/big.bin")
    data = bytes(stored.download_blob().readall())
    assert len(data) == size
    record = json.loads(_blob(container, "out/big.done.json"))
    assert record["outputs"]["big.bin"] == hashlib.md5(data).hexdigest()
    md5 = stored.get_blob_properties().content_settings.content_md5
    assert bytes(md5) == hashlib.md5(data).digest()
