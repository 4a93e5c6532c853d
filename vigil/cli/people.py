"""``vigil enroll``, ``vigil people`` and ``vigil gallery``: who is enrolled, and their backups."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from indexer.gallery import Gallery
from vigil.cli import learning
from vigil.config import Settings

EXIT_ERROR = 2


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:

    enroll = commands.add_parser(
        "enroll", help="enrol a person from photos (or every sub-folder of a folder)"
    )
    enroll.add_argument("name", nargs="?", help="the person's name (omit with --from-dir)")
    enroll.add_argument("images", nargs="*", type=Path, metavar="IMAGE", help="photos, or folders of photos")
    enroll.add_argument("--from-dir", type=Path, help="a folder with one sub-folder of photos per person")
    enroll.add_argument("--add", action="store_true", help="add photos to an already enrolled person")
    enroll.set_defaults(handler=cmd_enroll)

    people = commands.add_parser(
        "people", help="list, show, rename or delete enrolled people"
    ).add_subparsers(title="actions", metavar="ACTION", required=True)
    people.add_parser("list", help="every enrolled person").set_defaults(handler=cmd_people_list)
    show = people.add_parser("show", help="one person and their templates")
    show.add_argument("name")
    show.set_defaults(handler=cmd_people_show)
    rename = people.add_parser("rename", help="change a person's name")
    rename.add_argument("name")
    rename.add_argument("new_name")
    rename.set_defaults(handler=cmd_people_rename)
    delete = people.add_parser("delete", help="erase a person and all their templates")
    delete.add_argument("name")
    delete.set_defaults(handler=cmd_people_delete)
    learning.add_people_actions(people)

    gallery_cmd = commands.add_parser("gallery", help="back up or restore the gallery").add_subparsers(
        title="actions", metavar="ACTION", required=True
    )
    export = gallery_cmd.add_parser(
        "export", help="write every person (templates, corrections, history, aging opt-in) to a portable file"
    )
    export.add_argument("file", type=Path)
    export.set_defaults(handler=cmd_gallery_export)
    restore = gallery_cmd.add_parser("import", help="add the people of an export file (all or nothing)")
    restore.add_argument("file", type=Path)
    restore.set_defaults(handler=cmd_gallery_import)

    reembed = gallery_cmd.add_parser(
        "reembed", help="add templates for the current embedder from kept enrolment photos"
    )
    reembed.set_defaults(handler=cmd_gallery_reembed)


def cmd_enroll(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from indexer.enroll import enroll_people, image_files, people_folders
    from indexer.identify import Identifier
    from indexer.sources import SourceStore
    from vigil.errors import GalleryError
    from vigil.models.pipeline import FacePipeline

    if args.from_dir is not None:
        if args.name or args.images:
            raise GalleryError("give either NAME IMAGE... or --from-dir DIR, not both")
        people = people_folders(args.from_dir)
    else:
        if not args.name or not args.images:
            raise GalleryError("usage: vigil enroll NAME IMAGE... (or vigil enroll --from-dir DIR)")
        people = {args.name: image_files(args.images)}
    identifier = Identifier.from_settings(
        Gallery.from_settings(settings), FacePipeline.from_settings(settings), settings
    )
    sources = SourceStore.from_settings(settings) if settings.indexer.keep_sources else None
    outcomes = enroll_people(identifier, settings.indexer, people, add_to_existing=args.add, sources=sources)
    failures = 0
    for outcome in tqdm(
        outcomes, total=len(people), desc="enrolling", unit="person", disable=len(people) < 2
    ):
        report = outcome.report
        if report is None:
            print(f"vigil: error: {outcome.error}", file=sys.stderr)
            failures += 1
            continue
        print(
            f"enrolled {outcome.name}: {len(report.accepted)} photo(s) accepted, "
            f"{len(report.rejected)} rejected"
        )
        for rejected in report.rejected:
            print(f"  rejected {rejected.path}: {rejected.reason}")
        for warning in report.warnings:
            print(f"  warning: {warning}")
    return EXIT_ERROR if failures else 0


def cmd_people_list(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.people import list_people

    people = list_people(Gallery.from_settings(settings))
    for person in people:
        print(f"{person.identity.name}\t{person.templates} template(s)\t{person.models_text()}")
    print(f"{len(people)} people enrolled")
    return 0


def cmd_people_show(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.people import person_details

    person = person_details(Gallery.from_settings(settings), args.name)
    identity = person.identity
    print(f"{identity.name} (id {identity.identity_id}), enrolled {identity.created_at}")
    print(f"  templates per model: {person.models_text()}")
    for template in person.template_records:
        print(
            f"  template {template.template_id}: {template.embedder_version}, from {template.source or '?'}, "
            f"quality {template.quality:.1f}"
        )
    return 0


def cmd_people_rename(args: argparse.Namespace, settings: Settings) -> int:
    gallery = Gallery.from_settings(settings)
    gallery.rename(gallery.get_by_name(args.name).identity_id, args.new_name)
    print(f"renamed {args.name} to {args.new_name}")
    return 0


def cmd_people_delete(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.erase import erase_person_named

    erased = erase_person_named(settings, args.name)
    print(
        f"deleted {erased.name}: the person, {erased.templates} template(s) and "
        f"{erased.photos} kept photo(s) are erased; running services drop them on their next search"
    )
    rewritten = ", ".join(erased.rewritten) or "none (no persistence)"
    print(
        f"  also erased: {erased.negatives} negative(s), {erased.feedback} feedback record(s), "
        f"{erased.clusters} unknown cluster(s), {erased.events} event(s), {erased.thumbnails} event "
        f"thumbnail(s), {erased.results} frame result(s), {erased.keys} other key(s); "
        f"Redis files rewritten: {rewritten}"
    )
    return 0


def cmd_gallery_export(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.backup import export_gallery

    summary = export_gallery(Gallery.from_settings(settings), args.file)
    print(f"exported {summary.describe()} to {args.file}")
    return 0


def cmd_gallery_reembed(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from indexer.reembed import reembed_gallery
    from indexer.sources import SourceStore
    from vigil.models.pipeline import FacePipeline

    gallery = Gallery.from_settings(settings)
    pipeline = FacePipeline.from_settings(settings)
    with tqdm(total=len(gallery.list_identities()), desc="re-embedding", unit="person") as progress:
        report = reembed_gallery(
            gallery,
            SourceStore.from_settings(settings),
            pipeline,
            settings.indexer,
            lambda: progress.update(),
        )
    print(
        f"{report.added} template(s) added for {pipeline.embedder.version}, {report.up_to_date} already there"
    )
    for photo, reason in report.failed:
        print(f"  failed {photo}: {reason}")
    if report.without_photo:
        print(
            f"  {report.without_photo} template(s) have no kept photo "
            "(set indexer.keep_sources to keep photos from now on)"
        )
    if report.to_reenrol:
        print(
            f"  {len(report.to_reenrol)} people could not be moved to {pipeline.embedder.version} "
            "(no usable kept photo), for re-enrolment:"
        )
        for name in report.to_reenrol:
            print(f"    {name}")
    if report.orphans_removed:
        print(f"  removed {report.orphans_removed} kept photo(s) of people no longer enrolled")
    return EXIT_ERROR if report.failed else 0


def cmd_gallery_import(args: argparse.Namespace, settings: Settings) -> int:
    from indexer.backup import import_gallery

    summary = import_gallery(Gallery.from_settings(settings), args.file)
    print(f"imported {summary.describe()} from {args.file}")
    return 0
