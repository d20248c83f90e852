"""The test session's isolated Hugging Face home.

huggingface_hub reads HF_HOME once, when it is imported: importing this module sets it before any
test imports that client, so that no download of the test session lands in (or comes from) the
machine's own cache. It is created once per session; everything that needs it imports it from here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

HF_HOME = tempfile.mkdtemp(prefix="auditor-tests-hf-home-")
atexit.register(shutil.rmtree, HF_HOME, ignore_errors=True)
os.environ["HF_HOME"] = HF_HOME
for _name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
    os.environ.pop(_name, None)
