"""Bundled plugins. Each folder is an ordinary plugin (manifest + module), discovered and loaded
through the same path as any third-party plugin; nothing here is imported as a package."""
