"""Where Amazon's official SP-API models are, for the tests that read them.

The models are Amazon's data, not ours, and the repository does not ship them: point
SPAPI_MODELS_DIR at the models/ folder of a clone of amzn/selling-partner-api-models (.ci/run does
where the machine keeps a copy). Without it those tests skip, saying how to run them; with it set
to a folder that isn't there they run and fail, since that is a broken set-up, not a reason to
test less.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

MODELS_ENV = "SPAPI_MODELS_DIR"
_configured = os.environ.get(MODELS_ENV)
MODELS = Path(_configured) if _configured else Path("/nonexistent/spapi-models")

requires_models = pytest.mark.skipif(
    not _configured,
    reason=(
        f"{MODELS_ENV} is not set: set it to the models/ folder of a clone of "
        "amzn/selling-partner-api-models to run this test"
    ),
)
