// Launches panva's oidc-provider (installed by scripts/peers/oauth-server.sh) as an external
// OAuth 2.0 authorization server for key-repo's external-issuer test: client-credentials
// grant, client_secret_basic, ES256 JWT access tokens (RFC 9068) for one resource (the
// key repository's audience), plus a `products` claim per client.
//
// Environment: OIDC_AUDIENCE (resource indicator / aud), OIDC_CLIENTS (JSON array of
// {client_id, client_secret, scope, products}). Prints `listening on http://127.0.0.1:PORT`.
import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

const audience = process.env.OIDC_AUDIENCE;
const clients = JSON.parse(process.env.OIDC_CLIENTS || '[]');
if (!audience || clients.length === 0) {
  console.error('OIDC_AUDIENCE and OIDC_CLIENTS are required');
  process.exit(2);
}
const products = Object.fromEntries(clients.map((c) => [c.client_id, c.products || []]));

const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'idp-es256-1', alg: 'ES256', use: 'sig' };

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      scope: c.scope,
    })),
    jwks: { keys: [jwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['keys:read', 'keys:write', 'keys:revoke', 'audit:read'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => audience,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, resource) => {
          if (resource !== audience) throw new Error('unknown resource');
          return {
            scope: 'keys:read keys:write keys:revoke audit:read',
            audience,
            accessTokenTTL: 300,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
    },
    extraTokenClaims: (_ctx, token) => ({ products: products[token.clientId] || [] }),
  });
  server.on('request', provider.callback());
  console.log(`listening on ${issuer}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
