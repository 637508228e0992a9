"""Sub-command groups of the ``causalguard`` CLI, one module per group."""
