"""The dashboard's and Swagger UI's files ship inside the wheel: an installed service serves
/ui and /docs with no source tree and no CDN."""

from __future__ import annotations

import subprocess
import sys
import zipfile

from tests.conftest import ROOT


def test_the_wheel_carries_every_static_file(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "--quiet", "--wheel-dir", str(tmp_path),
                            str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("dvrl_service-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    static = {path.relative_to(ROOT).as_posix()
              for path in (ROOT / "api" / "static").rglob("*") if path.is_file()}
    assert {"api/static/ui/index.html", "api/static/ui/js/app.js",
            "api/static/vendor/swagger-ui/swagger-ui-bundle.js",
            "api/static/vendor/swagger-ui/LICENSE"} <= static
    assert static <= shipped, static - shipped
