"""Builds moe_cluster's native extension with the project's CMake (the repository above this folder):
configures a build folder (MOE_BUILD_DIR, default <repo>/build when it is already a CMake build, else
a folder under setuptools' build_temp) for this Python, builds the targets moe_py_native,
moe-coordinator and moe-worker, and puts _native*.so and the two daemons (moe_cluster/bin/, used by
serve-demo and moe_cluster.local) into the package."""

import os
import pathlib
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

REPO = pathlib.Path(__file__).resolve().parent.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        import pybind11

        build_dir = os.environ.get("MOE_BUILD_DIR")
        if not build_dir:
            build_dir = REPO / "build" if (REPO / "build" / "CMakeCache.txt").exists() else pathlib.Path(self.build_temp) / "cmake"
        build_dir = pathlib.Path(build_dir).resolve()
        configure = ["cmake", "-S", str(REPO), "-B", str(build_dir), f"-DMOE_PYTHON={sys.executable}",
                     f"-Dpybind11_DIR={pybind11.get_cmake_dir()}", "-DMOE_BUILD_PYTHON=ON"]
        if not (build_dir / "CMakeCache.txt").exists():
            configure += ["-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_TESTING=OFF"]
        subprocess.run(configure, check=True)
        jobs = os.environ.get("MOE_BUILD_JOBS", str(os.cpu_count() or 2))
        subprocess.run(["cmake", "--build", str(build_dir), "-j", jobs, "--target", "moe_py_native",
                        "moe-coordinator", "moe-worker"], check=True)

        built = sorted((build_dir / "python" / "moe_cluster").glob("_native*.so"))
        if not built:
            raise RuntimeError(f"the build produced no _native*.so in {build_dir / 'python' / 'moe_cluster'}")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[-1], target)
        bin_dir = target.parent / "bin"
        bin_dir.mkdir(exist_ok=True)
        for daemon in ("moe-coordinator", "moe-worker"):
            shutil.copy2(build_dir / "bin" / daemon, bin_dir / daemon)


setup(ext_modules=[Extension("moe_cluster._native", sources=[])], cmdclass={"build_ext": CMakeBuild})
