"""``python -m dml_core train | evaluate | embed | report`` (also under ``torchrun``)."""

import sys

if __name__ == "__main__":
    try:
        from dml_core.cli import main

        raise SystemExit(main())
    except KeyboardInterrupt:  # Ctrl-C while Python starts, before main() can answer it
        print("error: interrupted (Ctrl-C)", file=sys.stderr)
        raise SystemExit(130) from None
