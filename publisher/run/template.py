"""Imported first by the workers' template process (multiprocessing's fork server), for one
effect: it ignores SIGTERM.

A signal to the whole process group (`timeout`, a CI runner, a container stop) reaches the
runner, the template and the workers at once. Were the template to end, every worker would
look finished to the runner at once, whatever it still held; ignoring it, the template leaves
the runner to stop the workers and count what they gave back. It ends when the runner does
(multiprocessing's fork server ends when its parent's end of a pipe closes), and each worker
with it (see publisher.run.spawn). The runner never imports this module itself.
"""

import signal

signal.signal(signal.SIGTERM, signal.SIG_IGN)
