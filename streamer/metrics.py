"""Prometheus metrics of the service, aggregated over all its processes.

The service runs readers, workers and a tracker as separate processes; Prometheus should
see one target. prometheus_client's multiprocess mode does that: every process writes its
samples to files under ``$VIGIL_HOME/metrics/<run>`` and the supervisor serves the sum on
one port. The directory must be in ``PROMETHEUS_MULTIPROC_DIR`` *before* prometheus_client
is imported, so the supervisor sets it before importing this module and starting children
(``streamer.service``). Imported without it (tests, one-off tools) the metrics simply live
in the process.

Metric names and labels are part of Vigil's interface (the Grafana dashboard in
``deploy/`` uses them); they are listed in ``docs/metrics.md``.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)

LATENCY_BUCKETS_S = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
STAGE_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)

FRAMES_READ = Counter(
    "vigil_frames_read_total", "Frames sampled from a source and put on the bus.", ["camera"]
)
FRAMES_DROPPED = Counter(
    "vigil_frames_dropped_total",
    "Frames that were never analysed: trimmed from the full bus (backpressure) or left too long by a "
    "stopped worker (stale).",
    ["camera", "reason"],
)
FRAMES_PROCESSED = Counter("vigil_frames_processed_total", "Frames analysed by workers.", ["camera"])
FACES_DETECTED = Counter("vigil_faces_detected_total", "Faces found in analysed frames.", ["camera"])
FACES_REUSED = Counter(
    "vigil_faces_reused_total",
    "Faces that took the embedding of the same still face in an earlier frame (embedder.still_faces).",
    ["camera"],
)
RECOGNITIONS = Counter(
    "vigil_recognitions_total",
    "Track outcomes: recognized, unknown, or suppressed (the same person again within the cooldown).",
    ["camera", "outcome"],
)
EVENTS_PUBLISHED = Counter("vigil_events_published_total", "Events written to Redis.", ["camera", "type"])
EVENT_LATENCY = Histogram(
    "vigil_event_latency_seconds",
    "Capture of the frame behind an event to its publication.",
    ["camera"],
    buckets=LATENCY_BUCKETS_S,
)
STAGE_SECONDS = Histogram(
    "vigil_stage_seconds",
    "Time per batch in each worker stage: detect, embed, search, publish.",
    ["stage"],
    buckets=STAGE_BUCKETS_S,
)
BATCH_SIZE = Histogram("vigil_batch_frames", "Frames per worker batch.", buckets=BATCH_BUCKETS)
BUS_BACKLOG = Gauge(
    "vigil_bus_backlog_frames",
    "Frames on the bus not yet delivered to a worker (waiting) or delivered but not done (pending).",
    ["state"],
    multiprocess_mode="livemax",
)
SOURCE_UP = Gauge(
    "vigil_source_up", "1 while the source delivers frames, else 0.", ["camera"], multiprocess_mode="livemax"
)
SOURCE_STATE = Gauge(
    "vigil_source_state",
    "1 for the source's current state (connecting, live, backing-off, failed, finished), 0 for the others.",
    ["camera", "state"],
    multiprocess_mode="livemax",
)
SOURCE_RECONNECTS = Counter("vigil_source_reconnects_total", "Reconnection attempts per source.", ["camera"])
INDEX_TEMPLATES = Gauge(
    "vigil_index_templates", "Templates in a worker's search index.", multiprocess_mode="livemax"
)
GALLERY_VERSION = Gauge(
    "vigil_gallery_version",
    "Gallery version the workers' indexes were built from.",
    multiprocess_mode="livemax",
)
REDIS_ERRORS = Counter(
    "vigil_redis_errors_total",
    "Redis operations that failed, by error: connection, timeout, loading, out_of_memory, misconf, readonly.",
    ["component", "error"],
)
TRACKS_LEARNED = Counter(
    "vigil_tracks_learned_total",
    "Ended or unknown tracks the tracker learned from (kept unknowns, aging templates) or failed to.",
    ["outcome"],
)
POISON_ENTRIES = Counter(
    "vigil_bus_poison_entries_total",
    "Stream entries that could not be read (malformed, or trimmed while pending): acknowledged and skipped.",
    ["stream", "reason"],
)
PROCESS_RESTARTS = Counter(
    "vigil_process_restarts_total", "Service processes restarted after they died.", ["component"]
)
BRIDGE_EVENTS = Counter(
    "vigil_bridge_events_total",
    "Events a bridge handled, by bridge (mqtt, webhooks), target (mqtt: broker; webhooks: the endpoint's "
    "name; stream: dropped before any target, too old) and outcome: delivered, failed (an attempt), "
    "dropped (given up: too old, out of attempts, retry queue full), filtered, retried.",
    ["bridge", "target", "outcome"],
)
BRIDGE_LAG = Gauge(
    "vigil_bridge_lag_events",
    "Events in the events stream a bridge has not acknowledged (not yet read, or read and not delivered).",
    ["bridge"],
    multiprocess_mode="livemax",
)
BRIDGE_CONNECTED = Gauge(
    "vigil_bridge_connected",
    "1 when a bridge's target (the MQTT broker, a webhook endpoint) answered its last attempt, else 0.",
    ["bridge", "target"],
    multiprocess_mode="livemax",
)


def serve(host: str, port: int) -> int:
    """Serve the aggregated metrics of every process of this run on ``host:port``; returns the port.

    Port 0 picks a free one.
    """
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    server, _ = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)


def forget_process(pid: int) -> None:
    """Drop the live gauges of a process that has exited."""
    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
