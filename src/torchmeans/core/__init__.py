"""The engine: validation, seeding, the Lloyd loop, bounds, the assignment and its precision."""
