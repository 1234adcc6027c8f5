"""callgate's test doubles: what stands in for the outside world in tests, the demo and bench/.

- ``callgate_fakes.ari_simulator`` — a fake Asterisk 22 ARI (REST + events) on 127.0.0.1, its REST
  table shipped as data (``ari_swagger.json``, generated from the ARI swagger api-docs);
- ``callgate_fakes.paypal_standin`` — the slice of PayPal's REST API, checkout pages and signed
  webhooks that callgate uses;
- ``callgate_fakes.smtp_sink`` — an SMTP server on 127.0.0.1 that writes every message to a folder.

None of this is product. The product packages (billing_core, ari_app, agi, callgate_dialplan,
callgate) never import it — an import-linter contract in setup.cfg says so — with one exception:
``callgate.demo``, whose whole job is to run the product against these fakes. The fakes may import
the product (the stand-in signs webhooks with the product's own signing code, the simulator speaks
the dialplan contract of callgate_dialplan).
"""
