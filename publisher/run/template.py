"""Imported first by the workers' template process (multiprocessing's fork server), for two
effects: it ignores SIGTERM, and it imports nothing from the working directory.

A signal to the whole process group (`timeout`, a CI runner, a container stop) reaches the
runner, the template and the workers at once. Were the template to end, every worker would
look finished to the runner at once, whatever it still held; ignoring it, the template leaves
the runner to stop the workers and count what they gave back. It ends when the runner does
(multiprocessing's fork server ends when its parent's end of a pipe closes), and each worker
with it (see jobkit_publisher.run.spawn). The runner never imports this module itself.

The fork server starts as `python -c`, which puts the working directory first on the import
path, where a user's `worker.py` or `pika.py` would take the place of what the workers import.
Like `python -P`, the template takes it off again; a task's own modules come from PYTHONPATH
or an installed distribution, as for `jobkit-worker`.
"""

import signal
import sys

signal.signal(signal.SIGTERM, signal.SIG_IGN)
sys.path[:] = [entry for entry in sys.path if entry != ""]
