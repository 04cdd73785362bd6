"""The `jobkit` command line: the only package that imports typer or rich."""

import sys
from typing import NoReturn


def main() -> NoReturn:
    """The `jobkit` command. A local run first starts its workers' template process, whose
    imports (numpy, pyarrow, pika) then overlap the command line's own (typer, rich)."""
    if sys.argv[1:2] == ["run"] and "--kube" not in sys.argv:
        from jobkit_publisher.run.spawn import start_template

        start_template()
    from jobkit_publisher.cli.app import main as run_command

    run_command()
