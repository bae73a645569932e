"""python-threatexchange extension for following a Signet node.

Load it with `threatexchange config extensions add signet_tx` (or list it in HMA's extensions).
It adds the `signet` exchange (SignetSignalExchangeAPI) and exact-match signal types for Signet's
keyed identifiers.
"""

from threatexchange.extensions.manifest import ThreatExchangeExtensionManifest

from signet_tx.api import (
    SignetCheckpoint,
    SignetCollabConfig,
    SignetCredentials,
    SignetSignalExchangeAPI,
    SignetSignalMetadata,
)
from signet_tx.signals import (
    SignetEmailSignal,
    SignetPaymentSignal,
    SignetPhoneSignal,
    SignetUsernameSignal,
)

__all__ = [
    "TX_MANIFEST",
    "SignetCheckpoint",
    "SignetCollabConfig",
    "SignetCredentials",
    "SignetEmailSignal",
    "SignetPaymentSignal",
    "SignetPhoneSignal",
    "SignetSignalExchangeAPI",
    "SignetSignalMetadata",
    "SignetUsernameSignal",
]

TX_MANIFEST = ThreatExchangeExtensionManifest(
    signal_types=(SignetEmailSignal, SignetPhoneSignal, SignetUsernameSignal, SignetPaymentSignal),
    apis=(SignetSignalExchangeAPI,),
)
