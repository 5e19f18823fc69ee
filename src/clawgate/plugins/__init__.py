"""The plugin runtime: manifest-first discovery, pure load plans, immutable generations."""
