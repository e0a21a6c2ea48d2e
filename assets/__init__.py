"""Files the app ships beside its code: tray icons and the dashboard page.

A package, so that an installed wheel and a frozen build find them the same way
as a checkout: next to this file.
"""

from pathlib import Path

ASSETS = Path(__file__).resolve().parent
