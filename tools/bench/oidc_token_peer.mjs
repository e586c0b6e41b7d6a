// The token benchmark's peer: the npm oidc-provider (8.8.1, pinned in tools/package-lock.json)
// issuing client-credentials tokens to clients that authenticate with private_key_jwt, on
// loopback, as the gateway does: JWT access tokens signed with Ed25519 (the gateway's own
// algorithm), the provider's default in-memory store (so its replay refusal is per process and
// not durable, unlike the gateway's).
//
// Environment: CLIENTS_FILE, a JSON array of {client_id, jwks, alg} (the public keys each
// client signs its assertions with). Prints {"issuer": ..., "token_endpoint": ...} on its first
// line once listening.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import Provider from 'oidc-provider';

const clients = JSON.parse(fs.readFileSync(process.env.CLIENTS_FILE, 'utf8'));
const { privateKey } = crypto.generateKeyPairSync('ed25519');
const signing = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), alg: 'EdDSA', use: 'sig' };
const audience = 'urn:federation-gateway:bench';

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    jwks: { keys: [signing] },
    clients: clients.map(({ client_id, jwks, alg }) => ({
      client_id,
      jwks,
      redirect_uris: [],
      response_types: [],
      grant_types: ['client_credentials'],
      token_endpoint_auth_method: 'private_key_jwt',
      token_endpoint_auth_signing_alg: alg,
      // The provider's only key is Ed25519, so ID tokens (never issued here) would be EdDSA too.
      id_token_signed_response_alg: 'EdDSA',
    })),
    enabledJWA: {
      clientAuthSigningAlgValues: ['RS256', 'ES256', 'EdDSA'],
    },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'organisation:manage',
          audience,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'EdDSA' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer, token_endpoint: `${issuer}/token` }));
});
