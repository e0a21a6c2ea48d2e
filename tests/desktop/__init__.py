"""The desktop app: tray menu and tray under X, start at login, the CLI, the dashboard, start-up."""
