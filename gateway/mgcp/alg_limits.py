"""The MGCP ALG's ports and bounds (manual chapter 3 of the ScreenOS guide;
RFC 3435 3.5.3 default ports, 3.5.6 acknowledged ranges), the settings used
when none are given, and the reason every stateful-inspection drop names."""

from __future__ import annotations

from gateway.config.model import MgcpSettings

DEFAULT_SETTINGS = MgcpSettings()
# RFC 3435 3.5.3: the call agent listens on 2727, the gateway on 2427; a
# NotifiedEntity without a port means the call agent's default port.
CA_PORT = 2727
GW_PORT = 2427
# K: ranges wider than this are not expanded (RFC 3435 3.5.6 confirms a
# handful of recent transactions at a time).
MAX_ACK_RANGE = 256
# Endpoint records per media gateway: a residential gateway has a handful of
# lines, a trunking gateway some hundreds; past this a gateway naming ever new
# endpoints (RSIP, N:) is refused rather than growing the state without end.
MAX_ENDPOINTS_PER_GATEWAY = 2048
STATEFUL = "stateful inspection at the UDP packet, transaction and call level"
