"""The optional C loops of the metrics line parser (see runctl_tui/core/metrics/_speedups.c).

Everything else is declared in pyproject.toml. `optional=True`: where no C compiler is found
the install goes on without the extension and the parser runs in pure Python (slower, same
results).
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptimisedBuildExt(build_ext):  # type: ignore[misc]
    """Compile with optimisation even where a CFLAGS variable replaces Python's own flags."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for extension in self.extensions:
                extension.extra_compile_args = [*extension.extra_compile_args, "-O3"]
        super().build_extensions()


setup(
    ext_modules=[
        Extension(
            "runctl_tui.core.metrics._speedups",
            ["runctl_tui/core/metrics/_speedups.c"],
            optional=True,
        )
    ],
    cmdclass={"build_ext": OptimisedBuildExt},
)
