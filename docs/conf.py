"""Sphinx configuration for the identity_flask documentation."""

from __future__ import annotations

import importlib.metadata

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
