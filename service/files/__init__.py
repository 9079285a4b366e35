"""Reading what microscopes write: image formats, stacks, planes and physical units.

Imports nothing from ``service.serving`` or ``service.api``: the readers know files, not models
or HTTP."""
