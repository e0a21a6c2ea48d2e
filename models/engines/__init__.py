"""Engines: one module per inference library, each imported only inside its runner process."""
