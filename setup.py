"""Builds the Cython extensions in ext/ as scanner._ext.<name>, with their typed stubs (ext/*.pyi)."""
import shutil
from pathlib import Path

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

EXT_DIR = Path(__file__).parent / "ext"

extensions = [
    Extension(
        f"scanner._ext.{pyx.stem}",
        [f"ext/{pyx.name}"],
        include_dirs=[numpy.get_include(), "ext"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for pyx in sorted(EXT_DIR.glob("*.pyx"))
]


class BuildWithStubs(build_ext):
    """Puts each module's .pyi beside the built module (in place too), for type checkers and IDEs."""

    def run(self):
        super().run()
        for ext in self.extensions:
            stub = EXT_DIR / (ext.name.rsplit(".", 1)[1] + ".pyi")
            if stub.exists():
                target = Path(self.get_ext_fullpath(ext.name)).parent / stub.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(stub, target)


setup(
    cmdclass={"build_ext": BuildWithStubs},
    ext_modules=cythonize(
        extensions,
        include_path=["ext"],
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False,
                             "cdivision": True, "initializedcheck": False},
    ),
)
