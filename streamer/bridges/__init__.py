"""Bridges: processes that relay recognition events from the events stream to other systems.

A bridge reads ``streamer.events.stream`` through a Redis consumer group of its own
(``source.BridgeSource``), so it resumes where it stopped and never skips or repeats an event
across its own restarts; it passes each event through a filter (``filters.event_passes``,
``bridges.filter`` in the settings) and delivers it to its targets: an MQTT broker
(``mqtt``, with Home Assistant discovery) or HTTP endpoints (``webhooks``). It acknowledges an
entry only once it is delivered, or given up on and counted. ``vigil run`` starts each enabled
bridge as a supervised process; ``vigil bridge mqtt|webhooks`` runs one in the foreground.
"""
