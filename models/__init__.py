"""Model side of aistack: catalog, store, engines, runner processes and the manager.

Knows nothing about HTTP or the tray.
"""
