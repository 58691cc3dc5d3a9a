// A real OpenID Provider for Doorman's tests: panva's oidc-provider (OpenID-certified), configured as a
// business's provider would be, with its development login pages (a login is two form posts: login, consent).
//
//   node provider.js            listens on a free port of 127.0.0.1, prints {"issuer": ...} on one line when ready
//
// Signals: SIGUSR1 stops listening (every connection closed: the provider is down), SIGUSR2 listens again on the
// same port with the same state (tokens, sessions, keys); each prints {"listening": true|false} when done.
//
// Two confidential clients: the bot's (`doorman-bot`, allowed to introspect any token) and another app of the same
// business (`another-app`). Access tokens are opaque (no resource indicator is asked): userinfo and introspection
// are the only ways to check them. Accounts: any login name; `alice` and `bob` carry a full profile.

import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';
import MemoryAdapter from 'oidc-provider/lib/adapters/memory_adapter.js';

export const CLIENTS = [
  { client_id: 'doorman-bot', client_secret: 'doorman-bot-secret-0123456789' },
  { client_id: 'another-app', client_secret: 'another-app-secret-0123456789' },
];
const REDIRECT_URI = 'https://shop.example.com/callback';
// REDIRECT_URIS (JSON list): more redirect URIs for every client (a test's own site, signing users in in a browser).
const REDIRECT_URIS = [REDIRECT_URI, ...JSON.parse(process.env.REDIRECT_URIS ?? '[]')];

const ACCOUNTS = {
  alice: { email: 'alice@example.com', name: 'Alice Nguyen', phone_number: '+84912345678', metadata: { plan: 'gold' } },
  bob: { email: 'bob@example.com', name: 'Bob Tran' },
};

function account(id) {
  const profile = ACCOUNTS[id] ?? {};
  return {
    accountId: id,
    async claims() {
      return { sub: id, email_verified: Boolean(profile.email), ...profile };
    },
  };
}

// SIGNING_KEY (a private JWK, JSON): the key the provider signs with, so a test can sign what the provider would
// not (a logout token with a wrong claim) with a key the provider's JWKS publishes. Else one is made.
function signingKey() {
  if (process.env.SIGNING_KEY) return JSON.parse(process.env.SIGNING_KEY);
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', alg: 'RS256', use: 'sig' };
}

// BACKCHANNEL_LOGOUT_URIS (JSON: client_id -> URI): where the provider posts each client's logout tokens.
const BACKCHANNEL = JSON.parse(process.env.BACKCHANNEL_LOGOUT_URIS ?? '{}');

// MEMORY_STORE=unbounded: keep every session, grant and token (in a Map, for the process's life). The library's
// development store keeps only its latest 1,000 entries and a sign-in writes about eight, so a token older than some
// 150 sign-ins is forgotten (userinfo answers 401): enough for a test, not for the bench's 1,000 signed-in visitors.
const STORE = process.env.MEMORY_STORE === 'unbounded' ? new Map() : undefined;

function configuration() {
  return {
    clients: CLIENTS.map((c) => ({
      ...c,
      redirect_uris: REDIRECT_URIS,
      post_logout_redirect_uris: REDIRECT_URIS,
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      backchannel_logout_session_required: true,
      ...(BACKCHANNEL[c.client_id] ? { backchannel_logout_uri: BACKCHANNEL[c.client_id] } : {}),
    })),
    findAccount: async (ctx, id) => account(id),
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'metadata'],
      phone: ['phone_number'],
    },
    scopes: ['openid', 'email', 'profile', 'phone', 'offline_access'],
    jwks: { keys: [signingKey()] },
    cookies: { keys: ['doorman-test-cookie-key'] },
    features: {
      devInteractions: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      userinfo: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
    },
    ttl: { AccessToken: Number(process.env.ACCESS_TOKEN_TTL ?? 3600) },
    ...(STORE ? { adapter: (model) => new MemoryAdapter(model, STORE) } : {}),
    // Its SSRF guard refuses loopback, where the tests' Doorman listens: drop it (tests only).
    fetch: (url, { dispatcher, ...options }) => globalThis.fetch(url, options),
  };
}

const server = createServer();
let port = 0;

function listen(then) {
  server.listen(port, '127.0.0.1', () => {
    ({ port } = server.address());
    then();
  });
}

listen(() => {
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, configuration());
  provider.on('server_error', (ctx, err) => console.error(err));
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, clients: CLIENTS, redirect_uri: REDIRECT_URI }));
});

process.on('SIGUSR1', () => {
  server.close(() => console.log(JSON.stringify({ listening: false })));
  server.closeAllConnections();
});
process.on('SIGUSR2', () => listen(() => console.log(JSON.stringify({ listening: true }))));
process.on('SIGTERM', () => process.exit(0));
setInterval(() => {}, 1 << 30); // alive while it does not listen
