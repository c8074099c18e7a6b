"""Assignment and accumulation kernels (the torch reference path)."""
