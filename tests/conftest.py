"""Test-wide settings.

With ``MARGINKIT_CI`` set (``.ci/run`` sets it), hypothesis draws the same
examples on every run (``derandomize``): CI on a fresh machine passes or fails
reproducibly, and ``MARGINKIT_CI=1 pytest`` replays it here. Without it, runs
keep exploring new examples (and keep the failures they find in
``.hypothesis/``), which is how the property tests find new cases."""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True)
if os.environ.get("MARGINKIT_CI"):
    settings.load_profile("ci")
