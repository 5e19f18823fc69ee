"""Diagnostics: counters and histograms, the JSONL timeline, per-turn latency records."""
