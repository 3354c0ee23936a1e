"""Sphinx configuration for the identity_flask documentation."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

project = "identity_flask"
author = "identity_flask contributors"
copyright = "identity_flask contributors"
release = importlib.metadata.version("identity-flask")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "README.md"]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True}

html_theme = "furo"
html_title = "identity_flask"


def _check_troubleshooting(app: Any) -> None:
    """troubleshooting.md is rendered from identity_flask.diagnosis: a page that drifted fails the (-W) build."""
    from sphinx.util import logging as sphinx_logging

    from identity_flask.diagnosis import troubleshooting_page

    if Path(__file__).with_name("troubleshooting.md").read_text(encoding="utf-8") != troubleshooting_page():
        sphinx_logging.getLogger(__name__).warning(
            "docs/troubleshooting.md differs from the table in identity_flask/diagnosis.py; regenerate it: "
            "python -c \"from identity_flask.diagnosis import troubleshooting_page as p; print(p(), end='')\" "
            "> docs/troubleshooting.md"
        )


def setup(app: Any) -> None:
    app.connect("builder-inited", _check_troubleshooting)
