"""Test-wide settings.

Hypothesis: no per-example deadline (the machines that run these are shared and
a slow example is not a failure of the property); under CI the example search is
derandomized so a landing is judged on the same inputs every time (the same
properties still fail on any counterexample they reach), and a developer's run
keeps exploring new inputs."""

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# Test modules import helpers from one another (e.g. SIP message builders).
sys.path.insert(0, str(Path(__file__).resolve().parent))

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "dev")
