"""What a task is: the one seam between the worker's queue and storage work and the item's work."""

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

from jobkit_worker.storage.base import Content

Outputs = Mapping[str, Content]
"""An item's outputs by name: bytes, or a file that is streamed to the store."""

Task = Callable[[str, bytes], AbstractContextManager[Outputs]]
"""A task: the item's name and its input's bytes (with NO_INPUT, the message body) in, its
outputs out, held for the `with` block that stores them (a program's files are removed after
it). InputError dead-letters the item; any other exception retries it."""
