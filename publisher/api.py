"""The kit's Python API, for a program, a cron job or an Airflow task that publishes a batch.

    from jobkit_publisher.api import publish

    result = publish(["a.csv", "b.csv"], environ={"QUEUE": "nightly", ...})

Each call opens connections of its own, so calls from any threads at once are safe; what it
published is recorded as `jobkit publish` records it, for `jobkit status` and the next publish.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

from jobkit_publisher.queue.batch import BatchResult, check_items, find_inputs, publish_batch
from jobkit_worker.errors import InputError
from jobkit_worker.settings import Settings

__all__ = ["BatchResult", "publish"]

log = logging.getLogger(__name__)


def publish(
    items: Iterable[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
) -> BatchResult:
    """Publish a batch as `jobkit publish` does: one message per item (every *.csv under
    INPUT_URL when `items` is None) not done and not already queued; with `force`, all of
    them, to be done again. Settings come from `environ` (the process's environment if None).

    Returns what it published and skipped. Raises InputError, publishing nothing, if a name is
    refused (each named with why); the kit's other errors (JobkitError: ConfigError,
    BrokerUnavailable, PublishIncomplete) after recording what the broker confirmed.
    """
    settings = Settings.from_env(os.environ if environ is None else environ)
    names = find_inputs(settings).items if items is None else list(items)
    good, refused = check_items(names)
    if refused:
        raise InputError(f"Not published, {len(refused)} refused: {'; '.join(refused)}")
    return publish_batch(settings, good, force, lambda: _say_waiting(settings.queue))


def _say_waiting(queue: str) -> None:
    log.info("Waiting for another publisher of %r to finish.", queue)
