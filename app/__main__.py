"""`python -m app`: same as the `aistack` command."""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()  # frozen runner processes start here first

    from app.cli import main

    raise SystemExit(main())
