"""What a task is: the one seam between the worker's queue and storage work and the item's work."""

from collections.abc import Callable

Task = Callable[[str, bytes], dict[str, bytes]]
"""A task: the item's name and its input's bytes (with NO_INPUT, the message body) in,
{output name: bytes} out. InputError dead-letters the item; any other exception retries it."""
