"""The one thing pyproject.toml cannot declare: the optional compiled core.

prefork._native (prefork/_native.c) is built by `pip install` wherever a C compiler and
the Python headers are present. `optional=True`: where it cannot be built the install
still succeeds, and http_engine = "auto" serves with the Python path (it logs why).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "prefork._native",
            ["prefork/_native.c", "prefork/_native_http.c", "prefork/_native_wsgi.c",
             "prefork/_native_exchange.c", "prefork/_native_conn.c",
             "prefork/_native_worker.c", "prefork/_native_adopt.c",
             "prefork/_native_module.c", "prefork/_native_seam.c"],
            depends=["prefork/_native.h", "prefork/_native_seam.h",
                     "prefork/_native_compat.h"],
            extra_compile_args=["-O2", "-Wall", "-Wextra", "-Werror=implicit-function-declaration"],
            optional=True,
        ),
    ],
)
