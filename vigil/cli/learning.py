"""Commands for what the stream learns and users correct: ``vigil unknowns``, ``vigil feedback``,
``vigil people history`` and ``vigil people aging``.

The handlers call ``indexer.unknown_review``, ``streamer.feedback``, ``indexer.corrections``,
``indexer.history`` and ``indexer.aging`` and print what they return.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vigil.arguments import writable_folder
from vigil.config import Settings

if TYPE_CHECKING:
    from indexer.unknowns import UnknownCluster, UnknownStore

_EXIT_ERROR = 2
_IMAGES_HELP = (
    "copy each cluster's kept face images (indexer.unknowns.keep_images) to DIR/CLUSTER/ and print "
    "their paths; the copies are yours to delete, Vigil's own expire"
)


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    unknowns = commands.add_parser(
        "unknowns", help="faces the stream kept of strangers: cluster, list, enrol or forget them"
    ).add_subparsers(title="actions", metavar="ACTION", required=True)
    cluster = unknowns.add_parser("cluster", help="group the kept unknown tracks into people")
    cluster.add_argument("--json", action="store_true", help="print the clusters as JSON")
    cluster.add_argument("--images", type=writable_folder, metavar="DIR", help=_IMAGES_HELP)
    cluster.set_defaults(handler=cmd_unknowns_cluster)
    listing = unknowns.add_parser("list", help="the clusters (run `cluster` first)")
    listing.add_argument("--json", action="store_true", help="print the clusters as JSON")
    listing.add_argument("--images", type=writable_folder, metavar="DIR", help=_IMAGES_HELP)
    listing.set_defaults(handler=cmd_unknowns_list)
    enroll = unknowns.add_parser(
        "enroll", help="enrol a cluster as a new person, or add it to an enrolled one"
    )
    enroll.add_argument("cluster", metavar="CLUSTER", help="cluster number from `vigil unknowns list`")
    enroll.add_argument("name", metavar="NAME")
    enroll.set_defaults(handler=cmd_unknowns_enroll)
    forget = unknowns.add_parser("forget", help="delete a cluster's kept faces (or every unknown face)")
    forget.add_argument("cluster", metavar="CLUSTER", nargs="?", help="cluster number")
    forget.add_argument("--all", action="store_true", help="every cluster and every kept unknown track")
    forget.set_defaults(handler=cmd_unknowns_forget)

    feedback = commands.add_parser("feedback", help="correct an event: the face is, or is not, NAME")
    feedback.add_argument("event_id", metavar="EVENT_ID", help="event_id from `vigil events --json`")
    verdict = feedback.add_mutually_exclusive_group(required=True)
    verdict.add_argument(
        "--not", dest="not_name", metavar="NAME", help="the face is not NAME (hard negative)"
    )
    verdict.add_argument("--is", dest="is_name", metavar="NAME", help="the face is NAME (new template)")
    feedback.set_defaults(handler=cmd_feedback)


def add_people_actions(people: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    history = people.add_parser("history", help="a person's template additions and removals; undo one")
    history.add_argument("name")
    history.add_argument("--undo", type=int, metavar="ENTRY", help="reverse this addition (entry number)")
    history.add_argument("--json", action="store_true", help="one JSON object per entry")
    history.set_defaults(handler=cmd_people_history)
    aging = people.add_parser("aging", help="opt a person in to (or out of) template aging")
    aging.add_argument("name")
    aging.add_argument("state", choices=["on", "off"])
    aging.set_defaults(handler=cmd_people_aging)


def cmd_unknowns_cluster(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.unknown_review import cluster_unknowns, open_store

    clustering = cluster_unknowns(open_store(settings), settings)
    if args.json:
        return cmd_unknowns_list(args, settings)
    print(
        f"{clustering.tracks} unknown track(s) in {clustering.clusters} cluster(s) "
        f"at similarity {clustering.threshold:.4f}"
    )
    return cmd_unknowns_list(args, settings)


def cmd_unknowns_list(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.unknown_review import open_store, summarize

    store = open_store(settings)
    rows: list[dict[str, Any]] = []  # JSON lines as printed
    for cluster in store.clusters():
        rows.append(dict(summarize(store, cluster).to_json()))
        if args.images is not None:
            rows[-1]["image_files"] = [str(path) for path in _export_images(store, cluster, args.images)]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    for row in rows:
        where = ", ".join(row["cameras"]) or "-"
        if row["enrolled_as"] is not None:
            print(f"cluster {row['cluster']}: enrolled as identity {row['enrolled_as']}")
            continue
        images = ""
        if row["images"]:
            images = f", {row['images']} face image(s)" + ("" if args.images else " (see them: --images DIR)")
        print(
            f"cluster {row['cluster']}: {row['tracks']} track(s), {row['embeddings']} embedding(s), "
            f"cameras {where}, seen {row['first_seen']} to {row['last_seen']}{images}"
        )
        for path in row.get("image_files", []):
            print(f"  {path}")
    if not rows:
        print("no unknown clusters (run `vigil unknowns cluster` to group the kept unknown faces)")
    return 0


def cmd_unknowns_enroll(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.erase import StreamKeys
    from indexer.unknown_review import embedder_version, enrol_unknown_cluster, open_store
    from indexer.unknowns import parse_cluster_id

    cluster_id = parse_cluster_id(args.cluster)
    store = open_store(settings)
    keys = StreamKeys.from_settings(settings)
    enrolment = enrol_unknown_cluster(
        store, embedder_version(settings), cluster_id, args.name, stream_keys=keys
    )
    print(
        f"enrolled cluster {cluster_id} as {enrolment.identity.name}: {enrolment.templates} template(s) added"
    )
    return 0


def cmd_unknowns_forget(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.unknown_review import open_store
    from indexer.unknowns import parse_cluster_id
    from vigil.errors import GalleryError

    if args.all == (args.cluster is not None):
        raise GalleryError("give either a CLUSTER number or --all")
    store = open_store(settings)
    if args.all:
        count = store.forget_all(entries=True)
        print(f"forgot {count} cluster(s) and every kept unknown face")
        return 0
    cluster = store.forget(parse_cluster_id(args.cluster))
    print(f"forgot cluster {cluster.cluster_id} and its {len(cluster.entries)} track(s)")
    return 0


def cmd_feedback(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.corrections import Verdict
    from indexer.unknown_review import open_store
    from streamer.feedback import check_event_id, correct_event

    event_id = check_event_id(args.event_id)  # before any I/O
    store = open_store(settings)
    name = args.not_name if args.not_name is not None else args.is_name
    verdict: Verdict = "not" if args.not_name is not None else "is"
    feedback = correct_event(store.gallery.client, settings, store, event_id, verdict, name)
    if verdict == "is":
        print(f"event {event_id}: the face is now template {feedback.item_id} of {name}")
    else:
        print(
            f"event {event_id}: the face is now hard negative {feedback.item_id} of {name}; "
            "it will not be taken for them again"
        )
    return 0


def cmd_people_history(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from indexer.corrections import undo
    from indexer.gallery import Gallery

    gallery = Gallery.from_settings(settings)
    identity = gallery.get_by_name(args.name)
    if args.undo is not None:
        entry = undo(gallery, identity.identity_id, args.undo)
        print(
            f"undone entry {entry.entry}: {entry.item} {entry.item_id} ({entry.origin}) "
            f"removed from {identity.name}"
        )
        return 0
    for entry in gallery.history(identity.identity_id):
        if args.json:
            print(json.dumps(asdict(entry)))
            continue
        event = f" event {entry.event_id}" if entry.event_id else ""
        note = f" ({entry.note})" if entry.note else ""
        print(
            f"{entry.entry:4d}  {entry.at}  {entry.action} {entry.item} {entry.item_id}  "
            f"{entry.origin}{event}{note}"
        )
    return 0


def cmd_people_aging(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.aging import set_opted_in
    from indexer.gallery import Gallery

    gallery = Gallery.from_settings(settings)
    identity = gallery.get_by_name(args.name)
    set_opted_in(gallery, identity.identity_id, args.state == "on")
    globally = (
        " (indexer.aging.enabled is on: everyone ages anyway)" if settings.indexer.aging.enabled else ""
    )
    print(f"template aging {args.state} for {identity.name}{globally}")
    return 0


def _export_images(store: UnknownStore, cluster: UnknownCluster, folder: Path) -> list[Path]:
    """Write a cluster's kept face images to ``folder/CLUSTER/ENTRY.jpg``; their paths."""
    from vigil.files import path_inside, write_bytes_atomically

    paths = []
    for entry_id, jpeg in store.images(cluster.entries).items():
        # Ids come from Redis: the path is checked to stay inside the folder the user named.
        path = path_inside(folder, str(cluster.cluster_id), f"{entry_id}.jpg")
        write_bytes_atomically(path, jpeg)
        paths.append(path)
    return paths
