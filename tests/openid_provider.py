"""A real OpenID Provider for the tests: panva's ``oidc-provider`` (tests/oidc_provider/provider.js) run by Node.js,
installed from its lock file (``npm ci``) when its ``node_modules`` is missing.

:func:`running_provider` starts it on a free port of 127.0.0.1; :meth:`OpenIDProvider.login` signs a user in with
a real authorization-code flow (PKCE S256) through its development login pages over HTTP and returns the access
token the client got; :meth:`OpenIDProvider.down` takes it off the network and back (its state kept); :meth:`OpenIDProvider.logout` logs
the user out there (RP-initiated logout), which makes it post logout tokens to the clients' back-channel URIs.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp

HERE = Path(__file__).parent / "oidc_provider"
BOT_CLIENT = "doorman-bot"
OTHER_CLIENT = "another-app"
SCOPE = "openid email profile phone"
START_SECONDS = 30.0


def install() -> None:
    """``npm ci`` from the committed lock file, once (what ``make test`` does too)."""
    if (HERE / "node_modules" / "oidc-provider").is_dir():
        return
    npm = shutil.which("npm")
    assert npm is not None, "the OpenID Provider tests need Node.js and npm"
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE, check=True, timeout=300)


@dataclass(frozen=True)
class Login:
    """A user signed in at the provider: the tokens the site got, and the browser's cookies (its session there)."""

    access_token: str
    id_token: str
    browser: aiohttp.CookieJar
    client_id: str


@dataclass
class OpenIDProvider:
    issuer: str
    secrets: dict[str, str]  # client_id -> client_secret
    redirect_uri: str
    process: asyncio.subprocess.Process
    _discovery: dict[str, Any] = field(default_factory=dict)

    async def discovery(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        if not self._discovery:
            async with http.get(f"{self.issuer}/.well-known/openid-configuration") as resp:
                self._discovery = await resp.json()
        return self._discovery

    def _basic(self, client_id: str) -> dict[str, str]:
        return {"Authorization": aiohttp.encode_basic_auth(client_id, self.secrets[client_id])}

    async def login(self, user: str, client_id: str = BOT_CLIENT, *, scope: str = SCOPE) -> str:
        """``user`` signs in to ``client_id``'s site (login, then consent); the access token the site got."""
        return (await self.sign_in(user, client_id, scope=scope)).access_token

    async def sign_in(self, user: str, client_id: str = BOT_CLIENT, *, scope: str = SCOPE,
                      browser: aiohttp.CookieJar | None = None) -> Login:
        """As :meth:`login`, keeping the user's session at the provider (``browser``: the cookies of an earlier
        sign-in, so a second client joins the same session), for :meth:`logout`."""
        jar = browser if browser is not None else aiohttp.CookieJar(unsafe=True)  # cookies on an IP address
        async with aiohttp.ClientSession(cookie_jar=jar) as http:
            meta = await self.discovery(http)
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            state = secrets.token_urlsafe(16)
            url = meta["authorization_endpoint"] + "?" + urlencode({
                "client_id": client_id, "response_type": "code", "redirect_uri": self.redirect_uri, "scope": scope,
                "state": state, "code_challenge": challenge, "code_challenge_method": "S256",
            })
            code = await self._interact(http, url, user, state)
            async with http.post(meta["token_endpoint"], headers=self._basic(client_id),
                                 data={"grant_type": "authorization_code", "code": code,
                                       "redirect_uri": self.redirect_uri, "code_verifier": verifier}) as resp:
                tokens = await resp.json()
                assert resp.status == 200, tokens
        return Login(str(tokens["access_token"]), str(tokens["id_token"]), jar, client_id)

    async def logout(self, login: Login) -> None:
        """The user logs out at the provider (RP-initiated logout, confirmed on its page): it ends their session there
        and posts a logout token to the back-channel logout URI of each client in that session, before answering."""
        async with aiohttp.ClientSession(cookie_jar=login.browser) as http:
            meta = await self.discovery(http)
            async with http.get(meta["end_session_endpoint"], params={"client_id": login.client_id}) as resp:
                page = await resp.text()
                assert resp.status == 200, page
            action = re.search(r'<form id="op.logoutForm" method="post" action="([^"]+)"', page)
            xsrf = re.search(r'name="xsrf" value="([^"]+)"', page)
            assert action and xsrf, page
            async with http.post(urljoin(meta["end_session_endpoint"], unescape(action.group(1))),
                                 data={"xsrf": xsrf.group(1), "logout": "yes"}, allow_redirects=False) as resp:
                assert resp.status in (200, 302, 303), await resp.text()

    async def _interact(self, http: aiohttp.ClientSession, url: str, user: str, state: str) -> str:
        """Follow the provider's redirects, filling in its login and consent forms, to the code it sends back."""
        for _ in range(12):
            async with http.get(url, allow_redirects=False) as resp:
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    if url.startswith(self.redirect_uri):
                        query = parse_qs(urlsplit(url).query)
                        assert query.get("state") == [state], query
                        assert "code" in query, query
                        return query["code"][0]
                    continue
                page = await resp.text()
                assert resp.status == 200, page
            action = re.search(r'<form[^>]*action="([^"]+)"', page)
            prompt = re.search(r'name="prompt" value="(\w+)"', page)
            assert action and prompt, page
            form = {"prompt": prompt.group(1)}
            if form["prompt"] == "login":
                form.update(login=user, password="any password")
            async with http.post(urljoin(url, unescape(action.group(1))), data=form, allow_redirects=False) as resp:
                assert resp.status in (302, 303), await resp.text()
                url = urljoin(url, resp.headers["Location"])
        raise AssertionError("the login never came back with a code")

    async def revoke(self, token: str, client_id: str = BOT_CLIENT) -> None:
        async with aiohttp.ClientSession() as http:
            meta = await self.discovery(http)
            async with http.post(meta["revocation_endpoint"], data={"token": token},
                                 headers=self._basic(client_id)) as resp:
                assert resp.status == 200, await resp.text()

    async def _signal(self, sig: signal.Signals, listening: bool) -> None:
        self.process.send_signal(sig)
        assert self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), START_SECONDS)
            assert line, "the provider exited"
            if line.startswith(b"{") and json.loads(line).get("listening") is listening:
                return

    @asynccontextmanager
    async def down(self) -> AsyncIterator[None]:
        """The provider off the network (connections refused), then back on the same port, its state kept."""
        await self._signal(signal.SIGUSR1, False)
        try:
            yield
        finally:
            await self._signal(signal.SIGUSR2, True)


@asynccontextmanager
async def running_provider(**env: str) -> AsyncIterator[OpenIDProvider]:
    """The provider on a free port of 127.0.0.1 (``env``: e.g. ``ACCESS_TOKEN_TTL``, ``BACKCHANNEL_LOGOUT_URIS``,
    ``SIGNING_KEY``: see provider.js)."""
    await asyncio.to_thread(install)
    node = shutil.which("node")
    assert node is not None, "the OpenID Provider tests need Node.js"
    process = await asyncio.create_subprocess_exec(
        node, str(HERE / "provider.js"), cwd=HERE, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), START_SECONDS)
        assert line, "the provider did not start"
        ready = json.loads(line)
        yield OpenIDProvider(ready["issuer"], {c["client_id"]: c["client_secret"] for c in ready["clients"]},
                             ready["redirect_uri"], process)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
