"""Settings come from the environment, are validated at once and never show a password."""

from __future__ import annotations

import pytest

from jobkit_worker.broker import dead_queue_name
from jobkit_worker.errors import ConfigError
from jobkit_worker.settings import Settings, mask_url, with_task


def test_defaults_follow_the_seeds_names() -> None:
    settings = Settings.from_env({})
    assert settings.queue == "temperature_job"
    assert dead_queue_name(settings.queue) == "temperature_job.dead"
    assert settings.broker_url.startswith("amqp://")


def test_every_bad_variable_is_reported_in_one_message() -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(
            {
                "BROKER_URL": "http://user:hunter2@host/",
                "OUTPUT_URL": "s3://bucket/out",
                "LOG_LEVEL": "chatty",
            }
        )
    message = str(raised.value)
    assert "BROKER_URL" in message
    assert "OUTPUT_URL 's3://bucket/out'" in message
    assert "LOG_LEVEL 'chatty'" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("port", ["abc", "99999"])
def test_a_broker_port_that_is_not_a_port_is_a_configuration_error(port: str) -> None:
    with pytest.raises(
        ConfigError, match=f"BROKER_URL 'amqp://u:\\*\\*\\*@h:{port}/' has no valid"
    ):
        Settings.from_env({"BROKER_URL": f"amqp://u:secret@h:{port}/"})


def test_passwords_are_masked_in_urls() -> None:
    assert mask_url("amqps://jobs:s3cret@mq.example:5671/prod") == (
        "amqps://jobs:***@mq.example:5671/prod"
    )
    assert mask_url("amqp://localhost/") == "amqp://localhost/"


def test_describe_masks_the_broker_password() -> None:
    settings = Settings.from_env({"BROKER_URL": "amqp://u:topsecret@h:5672/%2F"})
    assert "topsecret" not in str(settings.describe())


def test_the_input_size_limit_is_read_and_checked() -> None:
    assert Settings.from_env({"MAX_INPUT_BYTES": "1000"}).max_input_bytes == 1000
    for bad in ("0", "-5", "1GB", "ten"):
        with pytest.raises(ConfigError, match=f"MAX_INPUT_BYTES '{bad}' is not a positive"):
            Settings.from_env({"MAX_INPUT_BYTES": bad})


def test_a_task_and_a_program_together_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="TASK and TASK_COMMAND are both set"):
        Settings.from_env({"TASK": "thumbnail", "TASK_COMMAND": "wc {input}"})


def test_a_program_cannot_take_an_input_file_when_items_are_not_files() -> None:
    with pytest.raises(ConfigError, match=r"TASK_COMMAND uses \{input\} but NO_INPUT is set"):
        Settings.from_env({"TASK_COMMAND": "render {input} {output_dir}", "NO_INPUT": "true"})


def test_a_task_chosen_on_the_command_line_replaces_the_one_in_the_environment() -> None:
    env = with_task({"TASK_COMMAND": "wc {input}"}, "thumbnail", None, no_input=False)
    settings = Settings.from_env(env)
    assert (settings.task, settings.task_command) == ("thumbnail", "")


@pytest.mark.parametrize("name", ["QUEUE", "BROKER_URL", "OUTPUT_URL", "TASK", "MAX_INPUT_BYTES"])
def test_a_variable_set_but_empty_is_a_configuration_error_naming_it(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        Settings.from_env({name: ""})
    with pytest.raises(ConfigError, match=f"{name} is set but empty"):
        Settings.from_env({name: "  "})


def test_a_work_queue_named_like_a_dead_letter_queue_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"QUEUE 'jobs\.dead' ends with '\.dead'"):
        Settings.from_env({"QUEUE": "jobs.dead"})
