"""Desktop side of aistack: command line, tray icon, starting and stopping the server."""
