"""Who is enrolled: each person with the models their templates are for (``vigil people``, the API).

A gallery may hold templates of several embedders (``embedder_version``): a person is only
found by the models they have templates for, so every listing says which.
"""

from __future__ import annotations

from dataclasses import dataclass

from indexer.gallery import Gallery
from indexer.records import Identity, Template


@dataclass(frozen=True)
class PersonSummary:
    """One enrolled person.

    Attributes:
        identity: Who.
        templates_per_model: Embedder version → how many templates they have in it.
    """

    identity: Identity
    templates_per_model: dict[str, int]

    @property
    def templates(self) -> int:
        return sum(self.templates_per_model.values())

    def models_text(self) -> str:
        """``dlib_resnet_v1+flip (2), sface_2021dec (1)``, or ``no templates``."""
        counts = sorted(self.templates_per_model.items())
        return ", ".join(f"{version} ({count})" for version, count in counts) or "no templates"


@dataclass(frozen=True)
class PersonDetails(PersonSummary):
    """One person with their templates (embeddings and provenance)."""

    template_records: list[Template]


def list_people(gallery: Gallery) -> list[PersonSummary]:
    """Every enrolled person, in the gallery's order, with their templates per model."""
    spaces = gallery.templates_by_space()
    return [
        PersonSummary(identity, spaces.of(identity.identity_id)) for identity in gallery.list_identities()
    ]


def person_details(gallery: Gallery, name: str) -> PersonDetails:
    """The person called ``name``, with their templates.

    Raises:
        GalleryError: Nobody is enrolled under that name.
    """
    identity = gallery.get_by_name(name)
    return PersonDetails(
        identity,
        gallery.templates_by_space().of(identity.identity_id),
        gallery.identity_templates(identity.identity_id),
    )
