"""PayPal: Orders v2 REST client, webhook verification and handling, checkout flow
(the stand-in server that plays PayPal in tests and the demo is callgate_fakes.paypal_standin).

Entry points for the web client area: :func:`callgate.paypal.checkout.start_checkout`,
:func:`~callgate.paypal.checkout.complete_return`, :func:`~callgate.paypal.checkout.cancel_return`,
and :func:`callgate.paypal.webhook.paypal_routes` mounted at ``/paypal/webhook``.
"""
