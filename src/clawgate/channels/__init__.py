"""The channel runtime: chat platforms as clients of the turn API, durable both ways (I11).

Plugins supply platform mechanics (``protocol.Channel``); this package owns accounts and their
supervision, the inbound pipeline (dedupe, gating, pairing, routing, admission), chunking,
preview streaming and durable outbound delivery with receipts.
"""
