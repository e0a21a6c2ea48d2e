"""The frozen app and the installer, and the suite runner itself."""
