"""``python -m dml_core train | evaluate | embed | report`` (also under ``torchrun``)."""

import os
import sys

INTERRUPTED = 130


def _exit_interrupted() -> None:
    """Exit with status 130 even when CPython would turn it into death by SIGINT.

    A Ctrl-C that lands while C code runs a Python string (``PyRun_String``, as some extensions do
    while torch imports) sets CPython's sticky "unhandled KeyboardInterrupt" flag even though the
    interrupt is caught; under ``python -m`` the interpreter then kills itself with SIGINT at exit
    (status -2) instead of returning ours. Nothing is left to write at this point.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED)


if __name__ == "__main__":
    try:
        from dml_core.cli import main

        status = main()
    except KeyboardInterrupt:  # Ctrl-C while Python starts, before main() can answer it
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        status = INTERRUPTED
    if status == INTERRUPTED:
        _exit_interrupted()
    raise SystemExit(status)
