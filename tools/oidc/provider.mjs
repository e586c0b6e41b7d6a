// A real OpenID provider (the npm package oidc-provider) for the reviewer tests, on loopback.
//
// Environment: REDIRECT_URI (the gateway's /auth/callback), AUDIENCE (the gateway's expected
// audience for bearer tokens), PORT (default: any free one; a restart on the same port keeps
// the issuer), KEYS: unset for oidc-provider's development keys, `rsa` for a fresh RS256 key
// (a restart with it is a key rotation), `ec` for a fresh P-256 key with ES256 as the only
// ID-token and access-token algorithm. Prints {"issuer": "..."} on its first line once
// listening.
//
// People: any login name with any password; the roles claim comes from ROLES below.
// Automation: client_credentials clients whose `roles` metadata becomes the token's roles.
import crypto from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const redirectUri = process.env.REDIRECT_URI;
const audience = process.env.AUDIENCE || 'urn:federation-gateway';
if (!redirectUri) {
  console.error('REDIRECT_URI is required');
  process.exit(2);
}

const keys = process.env.KEYS || '';
if (!['', 'rsa', 'ec'].includes(keys)) {
  console.error('KEYS must be unset, rsa or ec');
  process.exit(2);
}
const alg = keys === 'ec' ? 'ES256' : 'RS256';

// A fresh signing key with a fresh kid, so a restart is a rotation the gateway must notice.
function freshJwks() {
  const { privateKey } = keys === 'ec'
    ? crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { keys: [{ ...jwk, kid: crypto.randomUUID(), alg, use: 'sig' }] };
}

const ROLES = {
  reviewer1: ['reviewer'],
  approver1: ['approver', 'reviewer'],
  approver2: ['approver'],
  auditor1: ['auditor'],
  nobody: [],
};

const server = http.createServer();
server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'gateway',
        client_secret: 'gateway-secret',
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code'],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
      {
        client_id: 'automation-reviewer',
        client_secret: 'automation-secret',
        redirect_uris: [],
        response_types: [],
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
        roles: ['reviewer', 'auditor'],
      },
      {
        client_id: 'automation-no-role',
        client_secret: 'automation-secret',
        redirect_uris: [],
        response_types: [],
        grant_types: ['client_credentials'],
        token_endpoint_auth_method: 'client_secret_basic',
        roles: [],
      },
    ].map((client) => ({ ...client, id_token_signed_response_alg: alg })),
    ...(keys ? { jwks: freshJwks() } : {}),
    ...(keys === 'ec' ? { enabledJWA: { idTokenSigningAlgValues: ['ES256'] } } : {}),
    extraClientMetadata: { properties: ['roles'] },
    pkce: { required: () => true, methods: ['S256'] },
    claims: { openid: ['sub'], profile: ['name', 'roles'], email: ['email'] },
    conformIdTokenClaims: false,
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, name: `Test ${id}`, email: `${id}@example.org`, roles: ROLES[id] ?? [] }),
    }),
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resource) => ({
          scope: 'reviews',
          audience: resource,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg } },
        }),
      },
    },
    extraTokenClaims: async (ctx, token) => {
      if (token.kind === 'ClientCredentials') {
        const client = await ctx.oidc.provider.Client.find(token.clientId);
        return { roles: client?.roles ?? [] };
      }
      return undefined;
    },
  });
  server.on('request', provider.callback());
  console.log(JSON.stringify({ issuer }));
});
