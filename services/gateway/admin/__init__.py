"""The admin API (``/v1/bots``, ``/v1/workspaces``): called with the operator's token or a workspace's key, as
each route declares (``auth="workspace"`` or ``"operator"``; :mod:`services.gateway.access`). Bots, their
settings, the Testing panel and contacts (:mod:`.bots`), an OpenID Provider's discovery document read before
saving it (:mod:`.discover`), workspaces and their keys (:mod:`.workspaces`), identity push (:mod:`.identities`),
erasure and export (:mod:`.erasure`), webhooks (:mod:`.webhooks`); what they answer (:mod:`.views`,
:mod:`.contact_views`) and what they read and write (:mod:`.store`, :mod:`.directory`)."""
