"""Services: one use case per module. They know collaborators only by the interfaces in core.ports."""
