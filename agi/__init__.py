"""The AGI adapter: our asyncio FastAGI server (agi.server), the pyst2 classic AGI script
(agi.stdio) and the routes both run (agi.routes: authorize, answered, settle). Translation only:
every money decision is billing_core's."""
