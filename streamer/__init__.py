"""Streamer: camera readers, batched workers, tracks and recognition events."""
