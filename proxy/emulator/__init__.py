"""The offline SP-API emulator: LWA, STS and the SP-API sandbox on one port.

It stands in for Amazon, so it imports nothing from the proxy but the generated operations
table (usage plans for ``--throttle models``): signatures are checked from the raw bytes
received by its own SigV4 verifier.
"""

from proxy.emulator.app import (
    EMULATOR_STATE,
    EmulatorConfig,
    EmulatorState,
    ReceivedRequest,
    create_emulator_app,
    run_emulator,
)
from proxy.emulator.catalog import Case, Catalog, Operation
from proxy.emulator.sigv4 import KeyMaterial, Verdict, verify

__all__ = [
    "EMULATOR_STATE",
    "Case",
    "Catalog",
    "EmulatorConfig",
    "EmulatorState",
    "KeyMaterial",
    "Operation",
    "ReceivedRequest",
    "Verdict",
    "create_emulator_app",
    "run_emulator",
    "verify",
]
