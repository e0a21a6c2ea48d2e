"""Entry point of the frozen app (both `aistack` and `aistack-cli`).

`multiprocessing.freeze_support()` must run before anything parses arguments:
a frozen runner process starts this same executable, and without it the child
would fall into the CLI's argument parser and die.
"""

import multiprocessing

if __name__ == "__main__":
    multiprocessing.freeze_support()

    from app.cli import main

    raise SystemExit(main())
