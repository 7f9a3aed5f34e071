"""tests/reliability: the reply-parser fuzzer (no privileges) and forged-reply attacks on
namespace labs (root, as CI runs them). Frame helpers come from tests/unit/probekit.py, lab
helpers from tests/integration/conftest.py (loaded here as `integration_helpers`)."""
import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
if str(TESTS / "unit") not in sys.path:
    sys.path.insert(0, str(TESTS / "unit"))
if "integration_helpers" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("integration_helpers", TESTS / "integration" / "conftest.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["integration_helpers"] = _module
    _spec.loader.exec_module(_module)
