"""Sphinx configuration of kdeconv's documentation (``make docs``; warnings are errors there).

Pages are Markdown (MyST) or reStructuredText; the API reference comes from the numpydoc
docstrings; the example notebook is executed on every build (kikuchipy's bundled data: offline).
"""

from kdeconv import __version__

project = "kdeconv"
author = "kdeconv contributors"
copyright = "kdeconv contributors, GPL-3.0-or-later"
release = version = __version__

extensions = ["sphinx.ext.autodoc", "numpydoc", "myst_nb"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
root_doc = "index"

# API reference: numpydoc sections; members are listed where a page asks for them.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# The example notebook runs at every build, in the docs folder; an error fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"kdeconv {version}"
html_static_path: list[str] = []
