"""The Celery side of `make bench`: what a Python batch operator would run instead of the kit.

Long-lived workers (`celery worker -c 2`, started once and kept warm between batches), acks
late, a prefetch of one, and a lost worker's task rejected back to the queue: Celery's
settings for work that must not be lost. The task does what the kit's built-in task does
with one item: read the file, aggregate it with the same function, and store the result with
the same fsync'd atomic write. It writes no success record and checks no digest; the kit
does both.

The worker reads BROKER_URL and CELERY_QUEUE from its environment; results come back over
AMQP (`rpc://`), which is how the bench knows the batch is done.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.floor import aggregate_file

app = Celery("jobkit-bench", broker=os.environ.get("BROKER_URL"), backend="rpc://")
app.conf.update(
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    task_reject_on_worker_lost=True,
    task_default_queue=os.environ.get("CELERY_QUEUE", "jobkit-bench"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
aggregate = app.task(name="aggregate")(aggregate_file)
