"""Prometheus metrics the core owns (prometheus-client's default registry; `/metrics` serves it).

Adapters define their own (ARI connection state, webhook results) the same way; the service
exposes the one registry. Names are part of the operator interface: keep them.
"""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS_AUTHORIZED = Counter(
    "callgate_calls_authorized_total", "Calls allowed by authorize_call", ["direction", "emergency"]
)
CALLS_REFUSED = Counter("callgate_calls_refused_total", "Calls refused by authorize_call", ["direction", "reason"])
DESTINATION_BLOCKED = Counter(
    "callgate_destination_blocked_total",
    "Calls refused as destination_blocked, by the toll-fraud rule that refused them (region, number_type, prefix, "
    "max_rate)", ["rule"],
)
DECISION_SECONDS = Histogram(
    "callgate_decision_seconds",
    "Time to decide a call (authorize_call, storage included)",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
CALLS_SETTLED = Counter("callgate_calls_settled_total", "Call sessions settled", ["stale"])
SETTLE_CLAMPED = Counter(
    "callgate_settle_clamped_total",
    "Settlements cut to a bound: talk beyond what could have happened (bound=elapsed|grant), or a charge "
    "beyond the account's credit limit (bound=credit_limit) or its spend cap (bound=spend_cap)",
    ["path", "bound"],
)
FRAUD_SUSPENSIONS = Counter("callgate_fraud_suspensions_total", "Accounts suspended as fraud_suspected (issue 18)")
LIVE_CALLS = Gauge("callgate_live_calls", "Live call sessions (as of the last sidecar pass)")
SIDECAR_PASS_SECONDS = Histogram(
    "callgate_sidecar_pass_seconds", "Duration of one full sidecar pass",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0),
)
OUTBOX_QUEUED = Gauge("callgate_outbox_queued", "Alert emails waiting to be sent")
OUTBOX_FAILED = Gauge("callgate_outbox_failed", "Alert emails that failed permanently")
