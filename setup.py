"""Build hooks that pyproject.toml cannot express.

* The web app lives in the repository's top-level ``ui/`` folder but installs as the
  package ``recon3d_ui``, so site-packages never gets a generic top-level ``ui``.
* Wheels carry the embedded default model: the repository's ``models/<name>/`` folders
  (config.json, weights, model card) are copied into ``recon3d/_embedded/`` at build
  time, where ``recon3d.zoo`` finds them through ``importlib.resources``; git keeps the
  single copy in ``models/``.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildWithEmbeddedModels(build_py):
    def run(self):
        super().run()
        target = Path(self.build_lib) / "recon3d" / "_embedded"
        for model_dir in sorted((ROOT / "models").iterdir()):
            if (model_dir / "config.json").is_file():
                shutil.copytree(model_dir, target / model_dir.name, dirs_exist_ok=True)


setup(
    packages=find_packages(include=["recon3d", "recon3d.*"]) + ["recon3d_ui"],
    package_dir={"recon3d_ui": "ui"},
    cmdclass={"build_py": BuildWithEmbeddedModels},
)
