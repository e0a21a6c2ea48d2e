"""How models run: the manager (the one owner of model lifecycle), runner processes and their protocol,
the engine registry, placement, queueing and status. Imports every other models package; nothing imports it but server/app."""
