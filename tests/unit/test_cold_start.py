"""What a Lambda container loads before its first request: the HTTP API (tracking included)
and the stream handler must not pay for the template engine (Jinja2, Babel, CSS inlining),
which only a render needs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_importing_the_app_does_not_load_the_template_engine():
    probe = ("import sys, app; heavy = [m for m in ('jinja2', 'babel', 'css_inline', "
             "'chalicelib.domain.messaging.templates') if m in sys.modules]; print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"loaded at import: {out.stdout.strip()}"
