"""The ``vigil`` command line: one module per group of commands, each handler a thin shell.

A handler parses nothing itself (argparse did), calls one typed function of a domain package
(``indexer``, ``streamer``, ``trainer``) and prints what it returns; the domain packages never
import argparse. ``main`` builds the parser and maps every ``VigilError`` to one line.

    main.py      the entry point, the parser, logging, errors
    service.py   run, worker, demo, events, status: streamer.cameras, .status, .events
    people.py    enroll, people, gallery: indexer.enroll, .people, .erase, .backup
    images.py    detect, identify, analyze: indexer.identify, vigil.models
    learning.py  unknowns, feedback, people history/aging: indexer.unknowns, .corrections, ...
    config.py    check-config
    api.py       serve, api-keys: vigil.api
    train.py     train, calibrate, models: trainer
    bench.py     bench: trainer, streamer.bench_*, indexer.bench
"""

from vigil.cli.main import main

__all__ = ["main"]
