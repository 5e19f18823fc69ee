"""Model providers: the protocol plugins implement, and the provider types."""
