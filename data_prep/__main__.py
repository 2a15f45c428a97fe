"""``python -m data_prep`` = ``nowcast-prep``."""

from data_prep.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
