"""Which task a worker runs on each item: the built-in aggregation, a function, or a program.

Resolving stays cheap for the built-in: it is found without scanning the installed packages'
entry points, and imported with the first item, not before.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator

from jobkit_worker.errors import ConfigError, TaskError
from jobkit_worker.settings import DEFAULT_TASK, Settings
from jobkit_worker.tasks.contract import Outputs, Task

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "jobkit.tasks"


def load_task(settings: Settings) -> Task:
    """The task `settings` choose, ready to run.

    Raises ConfigError, naming the value, when it cannot be found or imported; a task of one's
    own is imported here, so that a mistake in it costs no message. The built-in is imported
    with its first item.
    """
    if settings.task_command:
        from jobkit_worker.tasks.program import (
            program_task,  # subprocess and tempfile only when needed
        )

        return _logged("ran the program on", program_task(settings))
    if settings.task == DEFAULT_TASK:
        return _logged("aggregated", _builtin(settings.max_span_hours))
    target = settings.task if ":" in settings.task else _registered(settings.task)
    return _logged(f"ran {target} on", _checked(target, _import(settings.task, target)))


def _builtin(max_span_hours: int) -> Task:
    @contextlib.contextmanager
    def run(name: str, data: bytes) -> Iterator[Outputs]:
        from jobkit_worker.builtin.aggregate import aggregate_item  # with its pyarrow and numpy

        yield aggregate_item(name, data, max_span_hours)

    return run


def _logged(verb: str, task: Task) -> Task:
    """`task`, logging the task phase in the worker's story (took, read, <verb>, stored)."""

    @contextlib.contextmanager
    def run(name: str, data: bytes) -> Iterator[Outputs]:
        with task(name, data) as results:
            log.info("%s %s into %s", verb, name, ", ".join(results) or "no outputs")
            yield results

    return run


def _registered(name: str) -> str:
    """The package.module:function registered as `name` under the entry-point group."""
    from importlib.metadata import entry_points  # scans every installed package: tens of ms

    found = {entry.name: entry.value for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if name not in found:
        known = ", ".join(sorted({DEFAULT_TASK, *found}))
        raise ConfigError(
            f"TASK {name!r} is not a known task (known: {known}); install the package that "
            f"registers it under the entry-point group {ENTRY_POINT_GROUP!r}, or give "
            "package.module:function."
        )
    return found[name]


def _import(setting: str, target: str) -> Callable[..., object]:
    """The function `target` (package.module:function) names; ConfigError when it cannot."""
    module_name, _, attribute = target.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except ImportError as exc:
        raise ConfigError(
            f"TASK {setting!r}: cannot import {module_name!r} ({exc}); install its package or "
            "put it on PYTHONPATH."
        ) from exc
    except AttributeError:
        raise ConfigError(f"TASK {setting!r}: {module_name!r} has no {attribute!r}.") from None
    except Exception as exc:  # the module itself failed while loading
        raise ConfigError(
            f"TASK {setting!r}: importing {module_name!r} failed ({type(exc).__name__}: {exc})."
        ) from exc
    if not callable(found):
        raise ConfigError(f"TASK {setting!r}: {target!r} is not a function.")
    return found


def _checked(target: str, function: Callable[..., object]) -> Task:
    """`function` as a task, its result checked: a dict of output names to bytes."""

    @contextlib.contextmanager
    def run(name: str, data: bytes) -> Iterator[Outputs]:
        results = function(name, data)
        if not isinstance(results, dict) or not all(
            isinstance(key, str) and isinstance(value, bytes) for key, value in results.items()
        ):
            raise TaskError(
                f"{target} returned {type(results).__name__}, not a dict of output names to bytes."
            )
        yield results

    return run
