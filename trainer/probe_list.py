"""Chronological probe lists: the input of ``vigil bench pairs --template-aging``.

One photo per line, ``NAME PATH``, oldest first (blank lines and ``#`` comments are
skipped). ``NAME`` is one word (LFW's ``Fidel_Castro``); ``PATH`` is the rest of the line,
relative to the images folder or absolute. The first line of each person is their
enrolment photo; every later line of theirs is a probe, in the order given. Each person
needs at least one probe, and each photo is listed once (a probe that is its own
template would be recognised trivially).

Example::

    # name  path (relative to --images), oldest first
    Fidel_Castro Fidel_Castro/Fidel_Castro_0008.jpg
    Fidel_Castro Fidel_Castro/Fidel_Castro_0002.jpg
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from trainer.pairs import check_images_exist, content_lines, read_list_lines
from vigil.errors import DatasetError

logger = logging.getLogger(__name__)

_EXPECTED = "'NAME PATH' (a one-word name, then the photo's path)"


@dataclass(frozen=True)
class ListedPhoto:
    """One line of a probe list.

    Attributes:
        person: The name given.
        path: The photo (``images_dir`` joined with the path given).
        line: 1-based line number, for messages.
    """

    person: str
    path: Path
    line: int


@dataclass(frozen=True)
class ProbeList:
    """A probe list split into enrolment photos and probes.

    Attributes:
        enrolment: Each person's first photo, people in order of first appearance.
        probes: Every other photo, in list (chronological) order.
    """

    enrolment: list[ListedPhoto]
    probes: list[ListedPhoto]

    @property
    def people(self) -> list[str]:
        return [photo.person for photo in self.enrolment]


def read_probe_list(list_file: Path, images_dir: Path, *, check_images: bool = True) -> ProbeList:
    """Read and check a probe list.

    Args:
        list_file: The list (format in the module docstring).
        images_dir: Folder relative paths are taken from.
        check_images: Whether to check that every photo exists.

    Raises:
        DatasetError: The file is missing or unreadable, has no photos, a line is not
            ``NAME PATH`` or repeats a photo (the message gives the line number), a person
            has only their enrolment photo, or photos are missing.
    """
    lines = content_lines(read_list_lines(list_file, kind="probe list"))
    if not lines:
        raise DatasetError(f"probe list {list_file} is empty; add lines {_EXPECTED}, oldest first")
    photos = [_parse_line(list_file, images_dir, number, line) for number, line in lines]
    first_line: dict[Path, int] = {}
    for photo in photos:
        key = photo.path.resolve()
        if key in first_line:
            raise DatasetError(
                f"{list_file} line {photo.line}: {photo.path} is already listed on line {first_line[key]}; "
                "list each photo once"
            )
        first_line[key] = photo.line
    enrolment: dict[str, ListedPhoto] = {}
    probes = []
    for photo in photos:
        if photo.person in enrolment:
            probes.append(photo)
        else:
            enrolment[photo.person] = photo
    probed = {photo.person for photo in probes}
    for person, photo in enrolment.items():
        if person not in probed:
            raise DatasetError(
                f"{list_file}: {person} has only one photo (line {photo.line}), their enrolment photo; "
                "add later photos of them or remove the line"
            )
    if check_images:
        check_images_exist(list_file, images_dir, [photo.path for photo in photos])
    logger.info("read %d people and %d probes from %s", len(enrolment), len(probes), list_file)
    return ProbeList(list(enrolment.values()), probes)


def _parse_line(list_file: Path, images_dir: Path, number: int, line: str) -> ListedPhoto:
    """``NAME PATH`` (the path may hold spaces: it is the rest of the line)."""
    fields = line.strip().split(maxsplit=1)
    if len(fields) != 2:
        raise DatasetError(f"{list_file} line {number}: expected {_EXPECTED}, got {line.strip()!r}")
    person, path = fields
    return ListedPhoto(person, images_dir / path.strip(), number)
