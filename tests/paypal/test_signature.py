"""Webhook signature verification as PayPal documents it, against the stand-in's signed
transmissions over real HTTP (certificate fetched from its cert URL). No database needed."""
from __future__ import annotations

import dataclasses
import time
import zlib

import pytest

from callgate import config as cfgmod
from callgate.paypal.config import DEFAULT_CERT_HOSTS, PayPalConfig
from callgate_fakes.paypal_standin import make_signing_key
from callgate.paypal.webhook import Rejected, Verified, WebhookVerifier, cert_url_allowed, crc32_decimal, signed_message

RESOURCE = {"id": "C0001ABC", "status": "COMPLETED", "amount": {"currency_code": "CAD", "value": "25.00"},
            "custom_id": "1"}


def test_signed_message_is_ids_time_webhook_and_decimal_crc32():
    assert crc32_decimal(b"hello") == "907060870"  # 0x3610A686, unsigned decimal
    body = b'{"id":"WH-1"}'
    expected = f"tid-1|2026-11-28T12:00:00Z|WH123|{zlib.crc32(body) & 0xFFFFFFFF}".encode()
    assert signed_message("tid-1", "2026-11-28T12:00:00Z", "WH123", body) == expected


async def test_a_genuine_transmission_verifies(standin, verifier):
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    result = await verifier.verify(signed.headers, signed.body)
    assert isinstance(result, Verified), result
    assert result.event["event_type"] == "PAYMENT.CAPTURE.COMPLETED"
    assert result.transmission_id == signed.transmission_id
    # header names are case-insensitive, as HTTP says
    lower = {k.lower(): v for k, v in signed.headers.items()}
    assert isinstance(await verifier.verify(lower, signed.body), Verified)


async def test_forgeries_are_rejected(standin, verifier):
    other_key, _ = make_signing_key()
    cases = {
        "tampered body": standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, tamper_body=True),
        "random signature": standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, bad_signature=True),
        "someone else's key": standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, signing_key=other_key),
        "another webhook id": standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, webhook_id="WHOTHER"),
    }
    for name, signed in cases.items():
        result = await verifier.verify(signed.headers, signed.body)
        assert isinstance(result, Rejected) and result.reason == "forged", (name, result)
    # a changed transmission id or time breaks the signature too
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    for header, value in (("PAYPAL-TRANSMISSION-ID", "another-id"),):
        result = await verifier.verify({**signed.headers, header: value}, signed.body)
        assert isinstance(result, Rejected) and result.reason == "forged"
    result = await verifier.verify({**signed.headers, "PAYPAL-TRANSMISSION-SIG": "not base64!"}, signed.body)
    assert result.reason == "forged"


async def test_stale_and_future_transmissions_are_rejected(standin, verifier):
    old = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, age=121)
    result = await verifier.verify(old.headers, old.body)
    assert isinstance(result, Rejected) and result.reason == "stale"
    future = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, age=-600)
    assert (await verifier.verify(future.headers, future.body)).reason == "stale"
    fresh_enough = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, age=100)
    assert isinstance(await verifier.verify(fresh_enough.headers, fresh_enough.body), Verified)
    garbage = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, transmission_time="yesterday")
    assert (await verifier.verify(garbage.headers, garbage.body)).reason == "stale"


async def test_certificate_must_come_from_a_pinned_host(standin, verifier):
    # An attacker hosting their own certificate (here: the stand-in on another origin name) fails the pin.
    elsewhere = standin.cert_url.replace("127.0.0.1", "localhost")
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, cert_url=elsewhere)
    result = await verifier.verify(signed.headers, signed.body)
    assert isinstance(result, Rejected) and result.reason == "cert_host"
    # the real PayPal pins do not accept the stand-in at all
    strict = WebhookVerifier(dataclasses.replace(verifier.config, cert_hosts=DEFAULT_CERT_HOSTS))
    good = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    assert (await strict.verify(good.headers, good.body)).reason == "cert_host"
    # a pinned host that does not serve the certificate
    missing = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE,
                                    cert_url=f"{standin.base_url}/v1/notifications/certs/CERT-nope")
    assert (await verifier.verify(missing.headers, missing.body)).reason == "cert_unavailable"


def test_cert_url_pinning_rules():
    pins = DEFAULT_CERT_HOSTS
    ok = "https://api.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-a5cafa77"
    assert cert_url_allowed(ok, pins)
    assert cert_url_allowed("https://api.sandbox.paypal.com/v1/notifications/certs/CERT-1", pins)
    for bad in (
        "http://api.paypal.com/v1/notifications/certs/CERT-1",          # not TLS
        "https://api.paypal.com.evil.test/v1/notifications/certs/CERT-1",
        "https://api.paypal.com@evil.test/v1/notifications/certs/CERT-1",
        "https://evil.test/v1/notifications/certs/CERT-1?x=api.paypal.com",
        "https://api.paypal.com:8443/v1/notifications/certs/CERT-1",
        "https://api.paypal.com/somewhere/else.pem",
        "https://api.paypal.com/v1/notifications/certs/../../x",
        "not a url",
    ):
        assert not cert_url_allowed(bad, pins), bad
    local = ("http://127.0.0.1:5000",)
    assert cert_url_allowed("http://127.0.0.1:5000/v1/notifications/certs/CERT-1", local)
    assert not cert_url_allowed("http://127.0.0.1:5001/v1/notifications/certs/CERT-1", local)
    assert not cert_url_allowed("https://127.0.0.1:5000/v1/notifications/certs/CERT-1", local)


async def test_missing_headers_and_wrong_algorithm(standin, verifier):
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    headers = dict(signed.headers)
    del headers["PAYPAL-TRANSMISSION-SIG"]
    result = await verifier.verify(headers, signed.body)
    assert result.reason == "missing_headers" and "PAYPAL-TRANSMISSION-SIG" in result.detail
    weak = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, auth_algo="SHA1withRSA")
    assert (await verifier.verify(weak.headers, weak.body)).reason == "bad_algorithm"


async def test_an_expired_certificate_is_refused(standin, verifier):
    standin.key, standin.cert_pem = make_signing_key(valid_from=0, valid_days=1)  # 1970
    signed = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    result = await verifier.verify(signed.headers, signed.body)
    assert isinstance(result, Rejected) and result.reason == "bad_certificate"


def paypal_config(environ) -> PayPalConfig:
    """PayPalConfig through the one configuration path ([paypal]: file + environment)."""
    return cfgmod.paypal_config(cfgmod.load(None, environ=environ))


def test_config_from_env_reads_the_documented_variables():
    cfg = paypal_config({
        "CALLGATE_PAYPAL_CLIENT_ID": "id", "CALLGATE_PAYPAL_SECRET": "s", "CALLGATE_PAYPAL_WEBHOOK_ID": "WH1",
        "CALLGATE_PAYPAL_BASE_URL": "http://127.0.0.1:9/", "CALLGATE_PAYPAL_CERT_HOSTS": "http://127.0.0.1:9, api.paypal.com",
        "CALLGATE_PAYPAL_WEBHOOK_MAX_AGE": "30",
    })
    assert (cfg.client_id, cfg.secret, cfg.webhook_id, cfg.base_url) == ("id", "s", "WH1", "http://127.0.0.1:9")
    assert cfg.cert_hosts == ("http://127.0.0.1:9", "api.paypal.com") and cfg.webhook_max_age == 30
    assert paypal_config({}).cert_hosts == DEFAULT_CERT_HOSTS
    assert paypal_config({}).problems()
    with pytest.raises(cfgmod.ConfigError, match="CALLGATE_PAYPAL_WEBHOOK_MAX_AGE"):
        paypal_config({"CALLGATE_PAYPAL_WEBHOOK_MAX_AGE": "soon"})


def _cert_fetches(standin) -> int:
    return sum(1 for method, path in standin.requests if path.startswith("/v1/notifications/certs/"))


async def test_certificate_failures_are_cached_and_fetches_bounded_per_minute(standin):
    now = [time.time()]
    verifier = WebhookVerifier(standin.config(webhook_max_age=10**9), clock=lambda: now[0])
    genuine = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE)
    assert isinstance(await verifier.verify(genuine.headers, genuine.body), Verified)
    base = _cert_fetches(standin)
    assert base == 1

    # The same missing certificate named again and again: fetched once.
    missing = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, bad_signature=True,
                                    cert_url=f"{standin.base_url}/v1/notifications/certs/CERT-nope")
    for _ in range(5):
        assert (await verifier.verify(missing.headers, missing.body)).reason == "cert_unavailable"
    assert _cert_fetches(standin) == base + 1

    # Unsigned requests naming a new path each time: at most the per-minute budget of fetches.
    for i in range(60):
        forged = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, bad_signature=True,
                                       cert_url=f"{standin.base_url}/v1/notifications/certs/CERT-probe-{i}")
        assert isinstance(await verifier.verify(forged.headers, forged.body), Rejected)
    assert _cert_fetches(standin) <= base + verifier.max_fetches_per_minute
    # The cached genuine certificate keeps working meanwhile.
    assert isinstance(await verifier.verify(genuine.headers, genuine.body), Verified)

    # A minute later the budget is back.
    now[0] += 61
    before = _cert_fetches(standin)
    again = standin.build_webhook("PAYMENT.CAPTURE.COMPLETED", RESOURCE, bad_signature=True,
                                  cert_url=f"{standin.base_url}/v1/notifications/certs/CERT-later")
    await verifier.verify(again.headers, again.body)
    assert _cert_fetches(standin) == before + 1
