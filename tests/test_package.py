"""The package's import boundaries."""

from __future__ import annotations

import subprocess
import sys


def test_mlx_core_does_not_import_fiftyone():
    code = ("import sys, fiftyone_videoprism as fvp, fiftyone_videoprism.core.video; "
            "assert 'fiftyone' not in sys.modules, sorted(m for m in sys.modules "
            "if m.startswith('fiftyone.'))")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fiftyone_names_load_lazily():
    import fiftyone_videoprism as fvp
    from fiftyone_videoprism.fo import runs, model as fo_model, zoo

    assert fvp.register_zoo is zoo.register_zoo
    assert fvp.VideoPrismModel is fo_model.VideoPrismModel
    assert fvp.compute_embeddings is runs.compute_embeddings
    try:
        fvp.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
