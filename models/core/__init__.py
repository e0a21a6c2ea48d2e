"""What every other package stands on: the settings and the error kinds of the contract.
Imports nothing from models."""
