"""``python -m dml_core train | evaluate | embed | report`` (also under ``torchrun``)."""

from dml_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
