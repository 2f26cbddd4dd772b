"""The FiftyOne plugin: its manifest, and the one-step install into ``fo.config.plugins_dir``.

FiftyOne has no entry-point discovery for plugins: it walks ``fo.config.plugins_dir`` for
``fiftyone.yml`` files and runs each plugin's ``py_entry`` from its path under a made-up module
name. A pip-installed wheel has no such folder, so :func:`install_plugin` writes one there::

    <plugins_dir>/fiftyone-videoprism/
        fiftyone.yml   the manifest below (py_entry: __init__.py)
        __init__.py    a shim importing the operators from the installed package

The shim imports this package absolutely, so the same folder serves an editable checkout and a
wheel, and upgrading the package upgrades the operators (re-install to refresh the manifest's
version). The repository's own ``fiftyone.yml`` holds the same manifest with ``py_entry`` set to
``fiftyone_videoprism/operators.py``, for a checkout placed in the plugins folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from fiftyone_videoprism.version import __version__

PLUGIN_NAME = "fiftyone-videoprism"
# Folder name under plugins_dir; FiftyOne identifies the plugin by the manifest's name.
PLUGIN_DIRNAME = "fiftyone-videoprism"
FIFTYONE_VERSION = ">=1.20,<2"
# Operator names, in the order the Operator browser lists them.
OPERATORS = ("compute_embeddings", "zero_shot_tag", "build_text_index", "search_by_text",
             "compute_moments", "find_moments", "tag_moments", "train_classifier",
             "apply_classifier", "embed_shard")
REPO_PY_ENTRY = "fiftyone_videoprism/fo/operators.py"

_SHIM = '''"""Plugin entry written by fiftyone_videoprism.fo.plugin.install_plugin.

FiftyOne runs this file under a made-up module name, so it imports the installed package
absolutely; the operators live in fiftyone_videoprism.fo.operators.
"""

from fiftyone_videoprism.fo.operators import register  # noqa: F401
'''


def manifest(py_entry: str = "__init__.py") -> dict[str, Any]:
    """The plugin's ``fiftyone.yml`` content, with ``py_entry`` relative to the plugin folder."""
    return {
        "name": PLUGIN_NAME,
        "type": "plugin",
        "version": __version__,
        "description": "VideoPrism (MLX) video embeddings, zero-shot tags, text search and few-shot classifiers",
        "url": "https://pypi.org/project/fiftyone-videoprism/",
        "license": "Apache-2.0",
        "fiftyone": {"version": FIFTYONE_VERSION},
        "py_entry": py_entry,
        "operators": list(OPERATORS),
    }


def plugin_dir(plugins_dir: str | os.PathLike | None = None) -> Path:
    """Where :func:`install_plugin` puts the plugin (default: under ``fo.config.plugins_dir``)."""
    if plugins_dir is None:
        import fiftyone as fo

        plugins_dir = fo.config.plugins_dir
    return Path(plugins_dir).expanduser() / PLUGIN_DIRNAME


def install_plugin(plugins_dir: str | os.PathLike | None = None) -> Path:
    """Installs the plugin folder into ``plugins_dir`` (default ``fo.config.plugins_dir``, set
    by ``FIFTYONE_PLUGINS_DIR``) and registers the zoo models; returns the folder.

    Idempotent and offline: files are rewritten only when this package ships different ones.
    The zoo registration (:func:`fiftyone_videoprism.fo.zoo.register_zoo`) is part of it because
    every process that runs the operators or answers the App's text searches loads the models
    by zoo name.

    Raises:
        FileExistsError: the target is a link or file that this function did not write
            (e.g. a symlinked checkout); remove it first
    """
    from fiftyone_videoprism.fo.zoo import register_zoo

    target = plugin_dir(plugins_dir)
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise FileExistsError(
            f"{target} exists and is not a plugin folder written by install_plugin(); "
            "remove it, then install again"
        )
    target.mkdir(parents=True, exist_ok=True)
    files = {
        "fiftyone.yml": yaml.safe_dump(manifest(), sort_keys=False),
        "__init__.py": _SHIM,
    }
    for name, text in files.items():
        dest = target / name
        if dest.is_file() and dest.read_text(encoding="utf-8") == text:
            continue
        # Write then rename: an App server scanning plugins never reads half a manifest.
        tmp = dest.with_name(dest.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, dest)
    register_zoo()
    return target


def uninstall_plugin(plugins_dir: str | os.PathLike | None = None) -> bool:
    """Removes the folder written by :func:`install_plugin`; returns whether there was one.

    Raises:
        FileExistsError: the folder holds some other plugin (its manifest names another
            plugin, or it is a link); it is left alone
    """
    target = plugin_dir(plugins_dir)
    if not target.exists() and not target.is_symlink():
        return False
    manifest_path = target / "fiftyone.yml"
    name = None
    if not target.is_symlink() and manifest_path.is_file():
        name = (yaml.safe_load(manifest_path.read_text(encoding="utf-8")) or {}).get("name")
    if name != PLUGIN_NAME:
        raise FileExistsError(
            f"{target} was not written by install_plugin() (manifest name {name!r}); "
            "remove it by hand if it is yours"
        )
    shutil.rmtree(target)
    return True
