"""The agent engine: roster and workspaces, prompts, lanes, the turn loop, the event bus."""
