"""Settings come from the environment, are validated at once and never show a password."""

from __future__ import annotations

import pytest

from worker.errors import ConfigError
from worker.settings import Settings, mask_url


def test_defaults_follow_the_seeds_names() -> None:
    settings = Settings.from_env({})
    assert settings.queue == "temperature_job"
    assert settings.dead_queue == "temperature_job.dead"
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
    assert "LOG_LEVEL 'CHATTY'" in message
    assert "hunter2" not in message


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
