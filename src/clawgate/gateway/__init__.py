"""The gateway: HTTP and WebSocket on one port over the engine and the plugin host."""
