"""Channels: each turns its wire messages into `InboundMessage`s and reply events back."""
