"""The public widget API (``/v1/widget/...``, CORS for any origin): open a session (:mod:`.opening`, batched),
deliver its outcome (:mod:`.outcomes`), end it (:mod:`.ending`); the routes are :mod:`.api`. Admission control
(:mod:`.admission`) and rate limits (:mod:`.ratelimit`) guard it. Every route here is declared ``auth="public"``."""
