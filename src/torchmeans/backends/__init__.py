"""How the engine's passes run: the torch reference, the native CPU kernel, Triton."""
