"""The package's import boundaries and the cost of its entry points."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fiftyone_videoprism.core as core

CORE_MODULES = sorted(f"fiftyone_videoprism.core.{m.name}" for m in pkgutil.iter_modules(core.__path__))


def _loaded_after(code: str) -> set[str]:
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                          text=True)
    return set(done.stdout.split())


def test_core_modules_import_no_fiftyone():
    assert {"fiftyone_videoprism.core.model", "fiftyone_videoprism.core.embedding",
            "fiftyone_videoprism.core.video"} <= set(CORE_MODULES)
    loaded = _loaded_after("\n".join(f"import {m}" for m in CORE_MODULES))
    assert set(CORE_MODULES) <= loaded
    assert not {m for m in loaded if m == "fiftyone" or m.startswith("fiftyone.")}


def test_importing_the_package_loads_neither_mlx_nor_fiftyone():
    loaded = _loaded_after("import fiftyone_videoprism")
    assert "mlx.core" not in loaded and "fiftyone" not in loaded


def test_cli_help_imports_no_fiftyone_or_mlx():
    # `fiftyone-videoprism --help` must answer at once: FiftyOne alone takes seconds to import.
    code = ("import sys\nfrom fiftyone_videoprism.fo import cli\n"
            "try:\n    cli.main(['--help'])\nexcept SystemExit:\n    pass")
    loaded = _loaded_after(code)
    assert "fiftyone_videoprism.fo.cli" in loaded
    assert "fiftyone" not in loaded and "mlx.core" not in loaded and "av" not in loaded


def test_cli_version():
    from fiftyone_videoprism.fo import cli

    done = subprocess.run([sys.executable, "-m", "fiftyone_videoprism.fo.cli", "--version"],
                          capture_output=True, text=True, check=True)
    import fiftyone_videoprism as fvp

    assert done.stdout.strip() == f"fiftyone-videoprism {fvp.__version__}"
    assert cli.__name__ == "fiftyone_videoprism.fo.cli"


def test_fiftyone_names_load_lazily():
    import fiftyone_videoprism as fvp
    from fiftyone_videoprism.fo import model as fo_model
    from fiftyone_videoprism.fo import runs, zoo

    assert fvp.register_zoo is zoo.register_zoo
    assert fvp.VideoPrismModel is fo_model.VideoPrismModel
    assert fvp.compute_embeddings is runs.compute_embeddings
    try:
        fvp.no_such_name
    except AttributeError as err:
        assert "no_such_name" in str(err)
    else:
        raise AssertionError("unknown attribute did not raise")
