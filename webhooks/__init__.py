"""Webhooks: a project's administrators have what happens to its jobs and model versions
POSTed, signed per the Standard Webhooks specification, to addresses of their choosing
(docs/webhooks.md)."""
