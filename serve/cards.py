"""Model card pages: a stored version's README.md as HTML, with its figures served from the version's folder alone."""

from __future__ import annotations

import html
import re
from xml.etree.ElementTree import Element

import markdown
from flask import Blueprint, Response, send_from_directory
from markdown.treeprocessors import Treeprocessor
from werkzeug.exceptions import NotFound

from zoo.cards.card import StoredCard, stored_card
from zoo.core.errors import UnknownVersionError
from zoo.core.reference import ModelRef
from zoo.serve.context import weights_store
from zoo.serve.repository import version_number

cards = Blueprint("cards", __name__)

FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.DOTALL)

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>zoo: {title}</title>
<base href="/models/{name}/versions/{version}/">
<link rel="stylesheet" href="/static/style.css">
</head>
<body>
<main class="card">
<nav><a href="/">draw a digit</a> &middot; {name} versions: {versions}</nav>
{body}
</main>
</body>
</html>
"""


# A link's scheme as a browser reads it: after dropping the control characters and spaces it ignores there.
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)
SAFE_SCHEMES = {"http", "https", "mailto"}


def safe_url(url: str) -> bool:
    """Whether `url` is relative or http(s) or mailto: `javascript:`, `data:` and the like are not."""
    scheme = _SCHEME.match(re.sub(r"[\x00-\x20\x7f]", "", url))
    return scheme is None or scheme.group(1).lower() in SAFE_SCHEMES


class DropUnsafeLinks(Treeprocessor):
    """Removes every href and src whose scheme is not safe_url's, so a card's markdown cannot carry a script link."""

    def run(self, root: Element) -> None:
        for element in root.iter():
            for attribute in ("href", "src"):
                if attribute in element.attrib and not safe_url(element.attrib[attribute]):
                    del element.attrib[attribute]


def card_html(card: StoredCard) -> str:
    """The card's markdown (front matter left out) as a page; raw HTML in the markdown is shown as text, not run,
    and links keep only the schemes safe_url allows."""
    renderer = markdown.Markdown(extensions=["tables", "fenced_code"])
    renderer.preprocessors.deregister("html_block")
    renderer.inlinePatterns.deregister("html")
    renderer.treeprocessors.register(DropUnsafeLinks(renderer), "drop_unsafe_links", 0)
    body = renderer.convert(FRONT_MATTER.sub("", card.markdown, count=1))
    versions = " ".join(
        f'<a href="/models/{card.name}/versions/{v}"{" aria-current=page" if v == card.version else ""}>{v}</a>'
        for v in card.versions
    )
    return PAGE.format(
        title=html.escape(f"{card.name} version {card.version}"),
        name=card.name,
        version=card.version,
        versions=versions,
        body=body,
    )


def _card(name: str, version: str | None) -> StoredCard:
    number = None if version is None else version_number(version)
    if version is not None and number is None:
        raise UnknownVersionError(f"expected a version number like 1 or 12, got {version[:40]!r}")
    return stored_card(name, number, weights_dir=weights_store())


@cards.get("/models/<name>")
@cards.get("/models/<name>/versions/<version>")
def card_page(name: str, version: str | None = None) -> tuple[str, int, dict[str, str]]:
    """The card of a model's latest version, or of the version named."""
    return card_html(_card(name, version)), 200, {"Content-Type": "text/html; charset=utf-8"}


@cards.get("/models/<name>/versions/<version>/<file>")
def card_figure(name: str, version: str, file: str) -> Response:
    """One of the card's figures, from the version's folder; any other file, or a path out of it, is a 404."""
    card = _card(name, version)
    if file not in card.figures:
        raise NotFound(
            f"{ModelRef(name, card.version)} has no figure {file!r}; its card shows {', '.join(card.figures) or 'none'}"
        )
    return send_from_directory(card.folder, file, mimetype="image/png", max_age=0)
