// A local OpenID Connect provider for identity_flask's tests and demo (oidc-provider 8.x, Node.js 18.12+).
//
//   node idp.mjs config.json
//
// It listens on https (the `port`, with `tls`). With `browserPort` it also listens on plain http
// on that port: the same routes, for the pages a browser visits (authorize, the sign-in page,
// logout), so a browser gets there without trusting the throw-away CA. Every URL those pages
// build stays on the origin the browser came in by. Metadata and tokens (the back channel)
// are for https: MSAL refuses an http authority, and the issuer is the https origin.
//
// Each entry of `tenants` is mounted as one Entra-shaped authority M:
//   M/v2.0/.well-known/openid-configuration   (issuer <origin>M/v2.0)
//   M/oauth2/v2.0/authorize, M/oauth2/v2.0/token, M/oauth2/v2.0/logout,
//   M/discovery/v2.0/keys, M/openid/userinfo
// An Entra tenant is "/<tenant-id>"; a B2C user flow "/<tenant>.onmicrosoft.com/B2C_1_<flow>".
//
// The sign-in page is M/interaction/<uid>: any login and password are accepted; "Cancel"
// returns access_denied, and on a B2C mount "Forgot your password?" returns AADB2C90118.
//
// Helpers for tests, outside every mount:
//   GET  /__health            "ok" once listening
//   GET  /__log               the requests seen so far; POST /__log reads and clears
//   POST /__fault             {"path": "/oauth2/v2.0/token", "status": 500, "delay": 0, "times": 1}
//                             the next `times` requests whose path ends with `path` wait `delay` ms,
//                             then answer `status` with an injected JSON error (0: answer as usual);
//                             with "body" (and "contentType", default text/html) they answer that
//                             body instead, with `status` or 200, e.g. an HTML page for a JSON endpoint
//                             with "redirectError" ({"error", "error_description"}) on the authorize
//                             path they send the browser back to the app with that error instead
//   DELETE /__fault           clears every fault
//   POST /__revoke            drops every refresh token (as if they had expired)
//   /__frontchannel           front-channel logout: POST ?register {"client_id", "uris"}; GET the URLs
//                             loaded so far (POST reads and clears); DELETE forgets both (see frontchannelPage)
//   POST /__keys/rotate       a new signing key signs everything from then on; older keys stay in
//                             jwks_uri. Answers {kid (signing now), kids (published)}; GET only reports
//   POST /__mint              {"claims": {...}, "header": {...}, "kid": "local-key-1"} -> {"token": JWT}
//                             signed RS256 with the current key (or the one named); `header` is merged
//                             over {alg: RS256, typ: JWT, kid}. For tests of token validation.
//
// Web APIs, switched on by the config key `apis` (without it the provider is as described above):
//   apis: [{client_id, scopes: ["Secret"], identifier_uri?, access_token_version?}]
//     An app registration exposing scopes. identifier_uri defaults to api://<client_id>;
//     access_token_version 1 gives v1 tokens (the manifest's accessTokenAcceptedVersion), default 2.
//     A sign-in or refresh for "api://<id>/Secret", "<id>/Secret" or "<id>/.default" gets an
//     Entra-shaped RS256 JWT access token. Every client may also use client credentials
//     ("<api>/.default": an app-only token with the client's app roles) and on-behalf-of
//     (grant_type urn:ietf:params:oauth:grant-type:jwt-bearer, requested_token_use=on_behalf_of).
//   On a client: app_roles ({"<api client id>": ["Jobs.Run"]}, or a list for every API) and
//     service_principal_id (oid and sub of its app-only tokens; default derived from client_id).
//     A client without redirect_uris is a daemon: no sign-in, only client credentials and OBO.
//   GET <origin>/organizations/v2.0/.well-known/openid-configuration (and /common/...): the
//     tenant's discovery document with Entra's multi-tenant issuer <origin>/{tenantid}/v2.0.
//
// Client credentials other than secrets (see "Client credentials" below): a client's
// `certificates` (private_key_jwt, with `require_x5c` for subject name and issuer trust) or
// `federated_credentials`, trusting the JWTs of the config's `federated_issuers`.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import Provider, { errors } from 'oidc-provider';
import { groupClaims, graphRequest } from './graph.mjs';

const defaults = {
  host: '127.0.0.1',
  port: 8443,
  tls: { cert: 'certs/server.pem', key: 'certs/server.key' },
  browserPort: null,
  tenants: ['/11111111-2222-3333-4444-555555555555'],
  tid: '11111111-2222-3333-4444-555555555555',
  accessTokenTtl: 3600,
  extraScopes: ['User.Read'],
  clients: [],
  users: {},
  apis: [],
};
const cfg = { ...defaults, ...(process.argv[2] ? JSON.parse(fs.readFileSync(process.argv[2], 'utf8')) : {}) };
const origin = `${cfg.tls ? 'https' : 'http'}://${cfg.host}:${cfg.port}`;
const browserOrigin = cfg.browserPort ? `http://${cfg.host}:${cfg.browserPort}` : null;

const newSigningKey = (kid) => ({
  ...crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }),
  kid,
  use: 'sig',
  alg: 'RS256',
});
// The signing keys, newest first: the first signs, all are published at jwks_uri (see rotateKeys).
const signingKeys = [newSigningKey('local-key-1')];
const accessTokenTtlByClient = new Map(cfg.clients.map((c) => [c.client_id, c.access_token_ttl]));
const accessTokenTtl = (clientId) => accessTokenTtlByClient.get(clientId) ?? cfg.accessTokenTtl;

const guidFrom = (text) => crypto.createHash('sha256').update(text).digest('hex')
  .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*$/, '$1-$2-$3-$4-$5');

// Any login and password are accepted; the login becomes `sub`, the other claims derive from it.
function claimsFor(login) {
  const oid = guidFrom(login);
  const username = login.includes('@') ? login : `${login}@example.test`;
  const name = login.split('@')[0].replace(/^./, (c) => c.toUpperCase());
  return {
    sub: login,
    oid,
    tid: cfg.tid,
    name,
    preferred_username: username,
    email: username,
    email_verified: true,
    given_name: name,
    family_name: 'Test',
    ...(cfg.users[login] || {}),
    ...groupClaims(login, { users: cfg.users, tid: cfg.tid, oid }),
    ...(acrsByAccount.has(login) ? { acrs: [...acrsByAccount.get(login)] } : {}),
    ...loginHintClaim(login),
  };
}

// ---- Sign-out: Entra's login_hint optional claim ----
// Every id token carries `login_hint`, an opaque value as Entra's optional claim (the app sends it
// back as `logout_hint`), except for logins starting "nohint-" (an app registration without the
// optional claim). Id tokens also carry `sid` (see includeSid in mountProvider).
function loginHintClaim(login) {
  if (login.startsWith('nohint-')) return {};
  return { login_hint: crypto.createHash('sha256').update(`login_hint:${login}`).digest('base64url') };
}

// ---- Step-up (Entra's authentication contexts) ----
// A sign-in whose claims request asks the id token for `acrs` values (Entra's authentication
// context, e.g. {"id_token":{"acrs":{"essential":true,"value":"c1"}}}) shows the sign-in form
// again, as Entra would run the context's conditional access (MFA), and from then on that
// user's id tokens carry those values in `acrs`. A login starting "noacrs-" never meets one.
const acrsByAccount = new Map();
function acrsAsked(claimsParam) {
  try {
    const asked = JSON.parse(claimsParam)?.id_token?.acrs;
    const values = asked?.values || (asked?.value !== undefined ? [asked.value] : []);
    return Array.isArray(values) ? values.filter((v) => typeof v === 'string' && /^c([1-9]|[1-9][0-9])$/.test(v)) : [];
  } catch {
    return [];
  }
}

// An unbounded store: the built-in development adapter is an LRU that drops refresh tokens
// after a few hundred sign-ins.
const records = new Map();
function current(key) {
  const entry = records.get(key);
  if (entry && entry.expiresAt <= Date.now()) records.delete(key);
  return records.get(key)?.value;
}
class MemoryAdapter {
  constructor(model) { this.model = model; }

  key(id) { return `${this.model}:${id}`; }

  async upsert(id, payload, expiresIn) {
    // No replay records: MSAL reuses a certificate's client assertion for about nine minutes, which
    // Entra accepts until it expires (see "Client credentials").
    if (this.model === 'ReplayDetection') return;
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : Infinity;
    records.set(this.key(id), { value: payload, expiresAt });
    if (payload.grantId) {
      const grantKey = `grant:${payload.grantId}`;
      records.set(grantKey, { value: [...(current(grantKey) || []), this.key(id)], expiresAt: Infinity });
    }
    if (payload.uid) records.set(`uid:${payload.uid}`, { value: id, expiresAt });
    if (payload.userCode) records.set(`userCode:${payload.userCode}`, { value: id, expiresAt });
  }

  async find(id) { return current(this.key(id)); }

  async findByUid(uid) { const id = current(`uid:${uid}`); return id && this.find(id); }

  async findByUserCode(code) { const id = current(`userCode:${code}`); return id && this.find(id); }

  async consume(id) {
    const value = current(this.key(id));
    if (value) value.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) { records.delete(this.key(id)); }

  async revokeByGrantId(grantId) {
    for (const key of current(`grant:${grantId}`) || []) records.delete(key);
    records.delete(`grant:${grantId}`);
  }
}

const isB2cMount = (mount) => /\/b2c_[^/]*$/i.test(mount);

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(title, body) {
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
         background: #f2f2f2; font: 15px/1.5 "Segoe UI", system-ui, sans-serif; color: #1b1b1b; }
  main { background: #fff; width: 340px; padding: 40px 44px; box-shadow: 0 2px 6px rgba(0, 0, 0, .2); }
  .brand { font-size: 13px; color: #616161; margin: 0 0 16px; }
  h1 { font-size: 24px; font-weight: 600; margin: 0 0 8px; }
  .hint { margin: 0 0 20px; color: #404040; }
  .error { color: #a4262c; }
  label { display: block; font-size: 13px; margin-bottom: 4px; }
  input { width: 100%; box-sizing: border-box; font: inherit; padding: 6px 2px; margin-bottom: 16px;
          border: 0; border-bottom: 1px solid #666; outline: none; }
  input:focus { border-bottom-color: #0067b8; }
  button { font: inherit; color: #fff; background: #0067b8; border: 0; padding: 6px 28px; cursor: pointer; }
  .actions { display: flex; justify-content: space-between; align-items: center; margin-top: 8px; }
  a { color: #0067b8; text-decoration: none; font-size: 13px; }
  a:hover { text-decoration: underline; }
  .more { margin-top: 20px; }
</style></head>
<body><main>
<p class="brand">Local identity provider (identity_flask demo and tests)</p>
${body}
</main></body></html>`;
}

// The sign-in page of `interaction`; every link and the form are paths, so they stay on the
// origin (https, or the http browser listener) the browser came in by.
function signInPage(mount, interaction, error) {
  const base = `${mount}/interaction/${interaction.uid}`;
  const hint = interaction.params.login_hint || '';
  const forgot = isB2cMount(mount)
    ? `<p class="more"><a href="${base}/forgot" id="forgot-password">Forgot your password?</a></p>` : '';
  return page('Sign-in', `<h1>Sign in</h1>
<p class="hint">Any login and password work, e.g. <strong>alice</strong>. Login <strong>alice</strong> signs in as alice@example.test.</p>
${error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : ''}
<form method="post" action="${base}" autocomplete="off">
<label for="login">Login</label>
<input id="login" type="text" name="login" value="${escapeHtml(hint)}" placeholder="alice" required autofocus>
<label for="password">Password</label>
<input id="password" type="password" name="password" placeholder="any password" required>
<div class="actions"><a href="${base}/abort" id="cancel">Cancel</a><button type="submit">Sign in</button></div>
</form>${forgot}`);
}

async function formFields(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString());
}

// M/interaction/<uid>[/abort|/forgot]: answers the request and returns true, or returns false
// for any other path.
async function interact(ctx, provider, mount) {
  const match = ctx.path.match(/^\/interaction\/([^/]+)(?:\/(abort|forgot))?$/);
  if (!match) return false;
  const [, uid, action] = match;
  let interaction;
  try {
    interaction = await provider.interactionDetails(ctx.req, ctx.res);
  } catch {
    interaction = null;
  }
  if (!interaction || interaction.uid !== uid) {
    ctx.status = 400;
    ctx.type = 'html';
    ctx.body = page('Sign-in expired', `<h1>This sign-in has expired</h1>
<p class="hint">Go back to the app and sign in again.</p>`);
    return true;
  }
  let result;
  if (action === 'abort') {
    result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
  } else if (action === 'forgot' && isB2cMount(mount)) {
    // B2C answers "Forgot your password?" with access_denied and the code AADB2C90118.
    result = { error: 'access_denied', error_description: 'AADB2C90118: The user has forgotten their password.' };
  } else if (action) {
    return false;
  } else if (interaction.prompt.name !== 'login') {
    // Consent, should a request ever need it: granted, as for an admin-consented Entra app.
    const { details } = interaction.prompt;
    const grant = (interaction.grantId && await provider.Grant.find(interaction.grantId))
      || new provider.Grant({ accountId: interaction.session.accountId, clientId: interaction.params.client_id });
    if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
    if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
    for (const [resource, scopes] of Object.entries(details.missingResourceScopes || {})) {
      grant.addResourceScope(resource, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else if (ctx.method === 'POST') {
    const login = (await formFields(ctx.req)).get('login')?.trim();
    if (!login) {
      ctx.type = 'html';
      ctx.body = signInPage(mount, interaction, 'Enter a login, e.g. alice.');
      return true;
    }
    const acrs = interaction.params.x_acrs;
    if (acrs && !login.startsWith('noacrs-')) {
      acrsByAccount.set(login, new Set([...(acrsByAccount.get(login) || []), ...acrs.split(' ')]));
    }
    result = { login: { accountId: login } };
  } else {
    ctx.type = 'html';
    ctx.set('cache-control', 'no-store');
    ctx.body = signInPage(mount, interaction);
    return true;
  }
  await provider.interactionFinished(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.respond = false;
  return true;
}

// Consent given by each user to each app: "<account> <client id>" -> grant id.
const grantsByOwner = new Map();

// Entra's refresh tokens are not bound to the scopes of the sign-in that brought them: any of
// them gets a token for any scope the user consented to for the app. oidc-provider checks the
// scopes a refresh token was issued with, so they are widened to the grant's before it looks.
async function widenToGrant(provider, value) {
  const refreshToken = value && await provider.RefreshToken.find(value, { ignoreExpiration: true });
  const grant = refreshToken?.grantId && await provider.Grant.find(refreshToken.grantId);
  if (!grant) return;
  const scopes = new Set([...refreshToken.scope.split(' '), ...grant.getOIDCScope().split(' ')].filter(Boolean));
  if (scopes.size === refreshToken.scope.split(' ').length) return;
  refreshToken.scope = [...scopes].join(' ');
  await refreshToken.save();
}

// ---- JWTs this provider signs and checks itself (API access tokens, OBO assertions, /__mint) ----

const base64urlJson = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');

// RS256 with `key` (the current signing key unless told), so it validates against jwks_uri.
function signJwt(payload, { header = {}, key = signingKeys[0] } = {}) {
  const input = `${base64urlJson({ alg: 'RS256', typ: 'JWT', kid: key.kid, ...header })}.${base64urlJson(payload)}`;
  const signature = crypto.sign('sha256', Buffer.from(input), crypto.createPrivateKey({ key, format: 'jwk' }));
  return `${input}.${signature.toString('base64url')}`;
}

// The claims of a JWT signed by one of this provider's keys (any still published), within its
// nbf and exp; throws an Error saying why not.
function verifyOwnJwt(token) {
  const [header64, payload64, signature64, more] = String(token).split('.');
  if (!signature64 || more !== undefined) throw new Error('not a signed JWT');
  let header;
  let payload;
  try {
    header = JSON.parse(Buffer.from(header64, 'base64url').toString());
    payload = JSON.parse(Buffer.from(payload64, 'base64url').toString());
  } catch {
    throw new Error('not a JWT');
  }
  const key = signingKeys.find((k) => k.kid === header.kid);
  if (header.alg !== 'RS256' || !key) throw new Error(`not signed by this provider (alg ${header.alg}, kid ${header.kid})`);
  const signed = Buffer.from(`${header64}.${payload64}`);
  if (!crypto.verify('sha256', signed, crypto.createPublicKey({ key, format: 'jwk' }), Buffer.from(signature64, 'base64url'))) {
    throw new Error('bad signature');
  }
  const now = Math.floor(Date.now() / 1000);
  if (!(payload.exp > now)) throw new Error('expired');
  if (payload.nbf > now) throw new Error('not yet valid');
  return payload;
}

// An OAuth error answer with Entra's kind of description.
function entraError(error, description) {
  return new errors.CustomOIDCProviderError(error, description);
}

// ---- APIs (config `apis`): Entra-shaped access tokens ----
// oidc-provider still authenticates clients, checks codes, PKCE and refresh tokens, and issues id
// tokens and refresh tokens; the access token for an API is minted here and put into its token
// answer. oidc-provider's resource indicators are not used: MSAL sends scopes, never `resource`;
// Entra's refresh tokens serve any API; and Entra's claims (scp, azp, ver, v1 iss and aud) are not
// RFC 9068's. Client credentials and on-behalf-of are grant handlers of their own.

const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const tenantIssuer = `${origin}/${cfg.tid}/v2.0`; // Entra's https://login.microsoftonline.com/<tid>/v2.0
const v1Issuer = `https://sts.windows.net/${cfg.tid}/`;
const apis = cfg.apis.map((api) => ({
  scopes: [], access_token_version: 2, identifier_uri: `api://${api.client_id}`, ...api,
}));
// Every spelling MSAL may send is declared as a scope, or oidc-provider drops it from the grant,
// the code and the refresh token.
const apiScopeNames = apis.flatMap((api) => [api.identifier_uri, api.client_id]
  .flatMap((prefix) => [...api.scopes, '.default'].map((name) => `${prefix}/${name}`)));
const clientsById = new Map(cfg.clients.map((c) => [c.client_id, c]));
const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'];
const otherThanOidc = (scope) => (scope || '').split(' ').filter((s) => s && !OIDC_SCOPES.includes(s));

// "api://<id>/Secret", "<id>/Secret", "<id>/.default" -> {api, prefix, name}; undefined for others.
function parseApiScope(scope) {
  for (const api of apis) {
    for (const prefix of [api.identifier_uri, api.client_id]) {
      if (scope.startsWith(`${prefix}/`)) return { api, prefix, name: scope.slice(prefix.length + 1) };
    }
  }
  return undefined;
}

// The API scopes among `scopes`: undefined if none; {error} if they name two APIs or a scope
// the API does not expose; else {api, prefix, requested (as sent), scp (short names), onlyDefault}.
function resolveApiScopes(scopes) {
  const found = scopes.map(parseApiScope).filter(Boolean);
  if (!found.length) return undefined;
  const { api, prefix } = found[0];
  if (found.some((f) => f.api !== api)) {
    return { error: `AADSTS28000: Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${scopes.join(' ')} is not valid.` };
  }
  const unknown = found.find((f) => f.name !== '.default' && !api.scopes.includes(f.name));
  if (unknown) {
    return { error: `AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope ${unknown.prefix}/${unknown.name} is not valid.` };
  }
  return {
    api,
    prefix,
    requested: [...new Set(found.map((f) => `${f.prefix}/${f.name}`))],
    scp: found.some((f) => f.name === '.default') ? api.scopes : [...new Set(found.map((f) => f.name))],
    onlyDefault: found.every((f) => f.name === '.default'),
  };
}

function appRolesFor(clientId, api) {
  const roles = clientsById.get(clientId)?.app_roles;
  return (Array.isArray(roles) ? roles : roles?.[api.client_id]) || [];
}

const servicePrincipalOf = (clientId) => clientsById.get(clientId)?.service_principal_id || guidFrom(`sp:${clientId}`);

// How the client authenticated, as azpacr/appidacr say it: 0 public, 1 secret, 2 certificate.
function authenticatedBy(client) {
  if (client.clientAuthMethod === 'none') return '0';
  if (federated.has(client.clientId)) return '2'; // a federated credential (see "Client credentials")
  return client.clientAuthMethod === 'private_key_jwt' ? '2' : '1';
}

// An access token for `api` shaped as Entra's: delegated (`user`, claims of the signed-in user,
// and `scp`) or app-only (`servicePrincipal` and `roles`).
function apiAccessToken({ api, prefix, azp, azpacr, ttl, user, scp, servicePrincipal, roles = [] }) {
  const now = Math.floor(Date.now() / 1000);
  const v1 = api.access_token_version === 1;
  const claims = {
    aud: v1 ? prefix : api.client_id, // v2: the API's client id; v1: the resource as asked for
    iss: v1 ? v1Issuer : tenantIssuer,
    iat: now,
    nbf: now,
    exp: now + ttl,
    ...(v1 ? { appid: azp, appidacr: azpacr } : { azp, azpacr }),
  };
  if (user) {
    Object.assign(claims, { name: user.name, oid: user.oid, scp: scp.join(' '), sub: user.sub, tid: user.tid });
    if (v1) {
      Object.assign(claims, {
        family_name: user.family_name,
        given_name: user.given_name,
        unique_name: user.preferred_username,
        upn: user.preferred_username,
      });
    } else {
      claims.preferred_username = user.preferred_username;
    }
  } else {
    Object.assign(claims, {
      idtyp: 'app', oid: servicePrincipal, ...(roles.length ? { roles } : {}), sub: servicePrincipal, tid: cfg.tid,
    });
  }
  return signJwt({ ...claims, uti: crypto.randomBytes(16).toString('base64url'), ver: v1 ? '1.0' : '2.0' });
}

// grant_type=client_credentials (MSAL's acquire_token_for_client) with scope "<api>/.default":
// an app-only token with the app roles the client has on that API; no scp.
async function clientCredentialsGrant(ctx, next) {
  const { client } = ctx.oidc;
  const scopes = otherThanOidc(ctx.oidc.params.scope);
  const asked = resolveApiScopes(scopes);
  if (asked?.error) throw entraError('invalid_scope', asked.error);
  if (!asked && scopes.length && scopes.every((s) => s.endsWith('/.default'))) {
    const resource = scopes[0].slice(0, -'/.default'.length);
    throw entraError('invalid_scope', `AADSTS500011: The resource principal named ${resource} was not found in the tenant named ${cfg.tid}.`);
  }
  if (!asked || !asked.onlyDefault || asked.requested.length !== scopes.length) {
    throw entraError('invalid_scope', `AADSTS1002012: The provided value for scope ${scopes.join(' ')} is not valid. `
      + 'Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).');
  }
  const ttl = accessTokenTtl(client.clientId);
  ctx.body = { // no scope, as Entra answers
    token_type: 'Bearer',
    expires_in: ttl,
    ext_expires_in: ttl,
    access_token: apiAccessToken({
      api: asked.api,
      prefix: asked.prefix,
      azp: client.clientId,
      azpacr: authenticatedBy(client),
      ttl,
      servicePrincipal: servicePrincipalOf(client.clientId),
      roles: appRolesFor(client.clientId, asked.api),
    }),
  };
  await next();
}

// grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer with requested_token_use=on_behalf_of
// (MSAL's acquire_token_on_behalf_of): the client is the middle API, `assertion` the user's access
// token for it; the answer is a token for the downstream API, same user, azp = the middle API.
// No refresh token and no id token.
async function onBehalfOfGrant(ctx, next) {
  const { client, params } = ctx.oidc;
  if (params.requested_token_use !== 'on_behalf_of') {
    throw entraError('invalid_request', "AADSTS900144: The request body must contain the parameter 'requested_token_use' set to on_behalf_of.");
  }
  if (!params.assertion) throw entraError('invalid_request', "AADSTS900144: The request body must contain the parameter 'assertion'.");
  const refuse = (why) => entraError('invalid_grant', `AADSTS50013: ${why}`);
  let incoming;
  try {
    incoming = verifyOwnJwt(params.assertion);
  } catch (e) {
    throw refuse(`Assertion failed signature validation or is invalid: ${e.message}.`);
  }
  if (![tenantIssuer, v1Issuer].includes(incoming.iss) || incoming.tid !== cfg.tid) {
    throw refuse(`Assertion issuer ${incoming.iss} (tenant ${incoming.tid}) is not tenant ${cfg.tid}.`);
  }
  const ownApi = apis.find((api) => api.client_id === client.clientId);
  const audiences = [client.clientId, ...(ownApi ? [ownApi.identifier_uri] : [])];
  if (!audiences.includes(incoming.aud)) {
    throw refuse(`Assertion audience ${incoming.aud} does not match the client ${client.clientId} presenting it.`);
  }
  if (incoming.idtyp === 'app' || !incoming.scp) {
    throw refuse('Assertion is not a delegated access token (it is app-only, or has no scp): on-behalf-of needs the user\'s token.');
  }
  const asked = resolveApiScopes(otherThanOidc(params.scope));
  if (!asked || asked.error) {
    throw entraError('invalid_scope', asked?.error || `AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope ${params.scope} is not valid.`);
  }
  // The user as the assertion names them.
  const user = { ...claimsFor(incoming.sub), tid: incoming.tid };
  for (const claim of ['oid', 'name', 'given_name', 'family_name', 'preferred_username']) {
    if (incoming[claim] !== undefined) user[claim] = incoming[claim];
  }
  if (incoming.preferred_username === undefined && incoming.upn !== undefined) user.preferred_username = incoming.upn;
  const ttl = accessTokenTtl(client.clientId);
  ctx.body = {
    token_type: 'Bearer',
    scope: asked.requested.join(' '),
    expires_in: ttl,
    ext_expires_in: ttl,
    access_token: apiAccessToken({
      api: asked.api, prefix: asked.prefix, azp: client.clientId, azpacr: authenticatedBy(client), ttl, user, scp: asked.scp,
    }),
  };
  await next();
}

// ---- Front-channel logout (OpenID Connect Front-Channel Logout 1.0; oidc-provider 8 dropped it) ----
// A client's front-channel logout URLs come from its config key `frontchannel_logout_uris`, or from
// POST /__frontchannel {"client_id", "uris"} (DELETE /__frontchannel forgets those and the log).
// When a browser's session ends at the end-session endpoint, the provider answers not with the
// redirect but with a page that loads, in hidden iframes, each such URL of every client signed in
// in that session, with `iss` and the client's `sid` (as in its id tokens), then follows the
// redirect. GET /__frontchannel lists the URLs loaded so far (POST reads and clears).
const frontchannelUris = new Map(cfg.clients.filter((c) => c.frontchannel_logout_uris)
  .map((c) => [c.client_id, c.frontchannel_logout_uris]));
const frontchannelLoaded = [];
const frontchannelBySecret = new Map(); // the end-session form's xsrf secret -> URLs to load

// From logoutSource: the session is about to end; note the URLs its clients must be sent.
function noteFrontchannel(ctx, issuer) {
  const { session } = ctx.oidc;
  const urls = [];
  for (const clientId of Object.keys(session.authorizations || {})) {
    const sid = session.sidFor(clientId);
    for (const uri of (sid && frontchannelUris.get(clientId)) || []) {
      const url = new URL(uri);
      url.searchParams.set('iss', issuer);
      url.searchParams.set('sid', sid);
      urls.push(url.href);
    }
  }
  if (urls.length && session.state?.secret) frontchannelBySecret.set(session.state.secret, urls);
}

// After the end-session confirmation answered with its redirect: the page of iframes instead.
function frontchannelPage(ctx) {
  const secret = ctx.oidc?.params?.xsrf;
  const urls = secret && frontchannelBySecret.get(secret);
  if (!urls || ctx.status !== 303) return;
  frontchannelBySecret.delete(secret);
  frontchannelLoaded.push(...urls.map((url) => ({ t: Date.now(), url })));
  const next = ctx.response.get('location');
  const nextJs = JSON.stringify(next).replace(/</g, '\\u003c');
  ctx.remove('location');
  ctx.status = 200;
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html><html><head><title>Signing out</title>
<script>let left = ${urls.length}; const go = () => window.location.replace(${nextJs});
function loaded() { left -= 1; if (left === 0) go(); } setTimeout(go, 5000);</script></head>
<body><p>Signing you out of your apps.</p>
${urls.map((u) => `<iframe class="frontchannel" src="${escapeHtml(u)}" style="display:none" onload="loaded()"></iframe>`).join('\n')}
<p><a id="continue" href="${escapeHtml(next)}">Continue</a></p></body></html>`;
}

// ---- Client credentials: certificates (private_key_jwt) and federated identity credentials ----
// On a client of the config:
//   certificates: [PEM text or file path]  it authenticates with a client assertion signed by a
//     certificate's key (private_key_jwt), as MSAL sends one for a certificate credential: RS256
//     with x5t (the SHA-1 thumbprint) or PS256 with x5t#S256. The thumbprint must name one of its
//     certificates, as Entra checks it even when the key is right (AADSTS700027).
//   require_x5c: true  the certificate is trusted by subject name and issuer: the assertion must
//     also carry it in x5c (MSAL's public_certificate), and it must be one of `certificates`.
//   federated_credentials: [{issuer, subject, audience?}]  it authenticates with a JWT of another
//     issuer (a managed identity, a Kubernetes service account), as Entra trusts a federated
//     identity credential: issuer, subject and audience (default api://AzureADTokenExchange) must
//     match one entry (AADSTS700211, 700213, 700212), and the JWT must be unexpired and signed RS256
//     by one of that issuer's keys, which the config lists as federated_issuers:
//     [{issuer, keys: [public JWK with kid]}] (AADSTS700024).
// A client has certificates or federated credentials, not both; either makes its azpacr "2".
const certificatePrints = new Map(); // client_id -> Set of its x5t and x5t#S256 (base64url, unpadded)
function certificateJwk(clientId, pemOrPath) {
  const pem = pemOrPath.includes('-----BEGIN') ? pemOrPath : fs.readFileSync(pemOrPath, 'utf8');
  const cert = new crypto.X509Certificate(pem);
  const x5t = crypto.createHash('sha1').update(cert.raw).digest('base64url');
  const x5tS256 = crypto.createHash('sha256').update(cert.raw).digest('base64url');
  if (!certificatePrints.has(clientId)) certificatePrints.set(clientId, new Set());
  certificatePrints.get(clientId).add(x5t).add(x5tS256);
  // No alg: one client sees RS256 and PS256. MSAL sends no kid, so oidc-provider tries each key of
  // the client; checkClientCertificate looks at the thumbprint.
  return { ...cert.publicKey.export({ format: 'jwk' }), use: 'sig', kid: x5t };
}

// oidc-provider's assertJwtClientAuthClaimsAndHeader: what Entra checks beyond the signature.
async function checkClientCertificate(ctx, claims, header, client) {
  const prints = certificatePrints.get(client.clientId);
  if (!prints) return;
  const unpadded = (value) => (typeof value === 'string' ? value.replace(/=+$/, '') : value);
  if (!prints.has(unpadded(header.x5t)) && !prints.has(unpadded(header['x5t#S256']))) {
    throw entraError('invalid_client', 'AADSTS700027: The certificate with the identifier used to sign the client '
      + `assertion is not registered on application ${client.clientId}.`);
  }
  if (clientsById.get(client.clientId)?.require_x5c) {
    const first = Array.isArray(header.x5c) ? header.x5c[0] : undefined;
    const sent = typeof first === 'string'
      && crypto.createHash('sha256').update(Buffer.from(first, 'base64')).digest('base64url');
    if (!sent || !prints.has(sent)) {
      throw entraError('invalid_client', `AADSTS700027: Application ${client.clientId} trusts its certificate by `
        + 'subject name and issuer: the client assertion must carry the certificate (x5c).');
    }
  }
}

const federatedIssuers = new Map((cfg.federated_issuers || []).map((entry) => [entry.issuer, entry.keys || []]));
const federated = new Map(cfg.clients.filter((c) => c.federated_credentials).map((c) => [c.client_id, {
  secret: crypto.randomBytes(24).toString('base64url'), // known to no one: the assertion stands in for it
  credentials: c.federated_credentials.map((f) => ({ audience: 'api://AzureADTokenExchange', ...f })),
}]));

// The claims of `token`, an RS256 JWT signed by one of `keys` (picked by kid), within nbf and exp.
function verifyFederatedJwt(token, keys) {
  const [header64, payload64, signature64, more] = token.split('.');
  if (!signature64 || more !== undefined) throw new Error('not a signed JWT');
  const header = JSON.parse(Buffer.from(header64, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(payload64, 'base64url').toString());
  const key = keys.find((k) => k.kid === header.kid);
  if (header.alg !== 'RS256' || !key) throw new Error(`not signed by a key of the issuer (alg ${header.alg}, kid ${header.kid})`);
  const signed = Buffer.from(`${header64}.${payload64}`);
  if (!crypto.verify('sha256', signed, crypto.createPublicKey({ key, format: 'jwk' }), Buffer.from(signature64, 'base64url'))) {
    throw new Error('bad signature');
  }
  const now = Math.floor(Date.now() / 1000);
  if (!(payload.exp > now)) throw new Error('the assertion has expired');
  if (payload.nbf > now) throw new Error('the assertion is not yet valid');
  return payload;
}

// A token request of a client with federated credentials: its client_assertion is checked here and
// swapped for the client's own secret (oidc-provider would read the client id from the assertion's
// sub, the managed identity). Returns why the assertion is refused, or undefined.
function federatedClientAuth(body) {
  const fic = federated.get(body.get('client_id'));
  if (!fic || !body.has('client_assertion')) return undefined;
  const assertion = body.get('client_assertion');
  let claims;
  try {
    claims = JSON.parse(Buffer.from(assertion.split('.')[1], 'base64url').toString());
  } catch {
    return 'AADSTS50027: The client assertion is not a JWT.';
  }
  const audiences = [].concat(claims.aud);
  let matches = fic.credentials.filter((f) => f.issuer === claims.iss);
  if (!matches.length) return `AADSTS700211: No matching federated identity record found for presented assertion issuer '${claims.iss}'.`;
  matches = matches.filter((f) => f.subject === claims.sub);
  if (!matches.length) return `AADSTS700213: No matching federated identity record found for presented assertion subject '${claims.sub}'.`;
  if (!matches.some((f) => audiences.includes(f.audience))) {
    return `AADSTS700212: No matching federated identity record found for presented assertion audience '${audiences.join(' ')}'.`;
  }
  try {
    verifyFederatedJwt(assertion, federatedIssuers.get(claims.iss) || []);
  } catch (e) {
    return `AADSTS700024: Client assertion is not valid: ${e.message}.`;
  }
  body.delete('client_assertion');
  body.delete('client_assertion_type');
  body.set('client_secret', fic.secret);
  return undefined;
}

// clientMetadata, with the client's certificates or federated credentials.
function credentialMetadata({ certificates, federated_credentials: federatedCredentials, require_x5c: _x5c, ...client }) {
  const meta = clientMetadata(client);
  if (certificates && federatedCredentials) {
    throw new Error(`client ${client.client_id}: certificates or federated_credentials, not both`);
  }
  if (certificates) {
    const { client_secret: _secret, ...rest } = meta;
    return {
      ...rest,
      token_endpoint_auth_method: 'private_key_jwt',
      jwks: { keys: certificates.map((cert) => certificateJwk(client.client_id, cert)) },
    };
  }
  if (federatedCredentials) return { ...meta, client_secret: federated.get(client.client_id).secret };
  return meta;
}

// oidc-provider's metadata for a client of the config (without the keys only this script reads).
function clientMetadata({
  access_token_ttl: _ttl, app_roles: _roles, service_principal_id: _sp, ignores_max_age: _ignores,
  frontchannel_logout_uris: _frontchannel, ...client
}) {
  // Entra lets any confidential client use client credentials and on-behalf-of; with `apis` so do we.
  const apiGrants = apis.length ? ['client_credentials', JWT_BEARER] : [];
  if (apis.length && !client.redirect_uris) { // a daemon: no sign-in
    return {
      grant_types: apiGrants, response_types: [], token_endpoint_auth_method: 'client_secret_post', ...client,
    };
  }
  return {
    grant_types: ['authorization_code', 'refresh_token', ...apiGrants],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post', // MSAL sends the secret in the body
    ...client,
  };
}

function mountProvider(mount, index) {
  const provider = new Provider(`${origin}${mount}/v2.0`, {
    clients: cfg.clients.map(credentialMetadata), // clientMetadata, with certificates or federated credentials
    jwks: { keys: signingKeys.map((key) => ({ ...key })) }, // read once: see rotateKeys()
    adapter: MemoryAdapter,
    cookies: {
      keys: ['local-provider-cookie-key'],
      names: { session: `_session${index}`, interaction: `_interaction${index}`, resume: `_resume${index}` },
      // Lax, not 8.x's default SameSite=None, which browsers refuse on a cookie that is not Secure:
      // the http browser listener cannot set Secure cookies. Every page is a top-level visit.
      long: { httpOnly: true, sameSite: 'lax' },
    },
    scopes: ['openid', 'offline_access', 'profile', 'email', ...cfg.extraScopes, ...apiScopeNames],
    claims: {
      openid: ['sub', 'oid', 'tid'],
      profile: ['name', 'preferred_username', 'given_name', 'family_name', 'roles', 'groups', 'hasgroups', 'acrs', 'login_hint'],
      email: ['email', 'email_verified'],
    },
    conformIdTokenClaims: false, // profile claims in the id_token, as Entra does
    extraParams: ['x_acrs', 'domain_hint'], // see acrsAsked; Entra's home-realm hint
    findAccount: async (ctx, sub) => ({ accountId: sub, claims: async () => claimsFor(sub) }),
    // No consent page: every requested scope is granted, like an admin-consented Entra app.
    loadExistingGrant: async (ctx) => {
      // Entra keeps consent per user and app, not per browser session.
      const owner = `${ctx.oidc.session.accountId} ${ctx.oidc.client.clientId}`;
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId)
        || grantsByOwner.get(owner);
      const grant = (grantId && await ctx.oidc.provider.Grant.find(grantId))
        || new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
      grant.addOIDCScope([...ctx.oidc.requestParamOIDCScopes].join(' '));
      grantsByOwner.set(owner, await grant.save());
      return grant;
    },
    // OIDC Core issues refresh tokens only with prompt=consent, which MSAL never sends; Entra
    // issues them to every client allowed the grant.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    expiresWithSession: async () => false,
    pkce: { required: () => true },
    clockTolerance: 0, // so a 5-second access token really expires after 5 seconds
    assertJwtClientAuthClaimsAndHeader: checkClientCertificate, // see "Client credentials"
    ttl: {
      AccessToken: (ctx, token, client) => accessTokenTtl(client?.clientId),
      IdToken: 3600,
      RefreshToken: 14 * 24 * 3600,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false }, // our own sign-in page, see interact()
      rpInitiatedLogout: {
        enabled: true,
        logoutSource: async (ctx, form) => { // Entra signs out without asking
          noteFrontchannel(ctx, `${origin}${mount}/v2.0`); // front-channel logout, see frontchannelPage
          ctx.body = `<!DOCTYPE html><html><head><title>Sign out</title></head><body>${form}
<button type="submit" form="op.logoutForm" name="logout" value="yes" id="logout-yes">Sign out</button>
<script>document.getElementById('logout-yes').click()</script></body></html>`;
        },
      },
      revocation: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: { url: async (ctx, interaction) => `${mount}/interaction/${interaction.uid}` },
    routes: {
      authorization: '/oauth2/v2.0/authorize',
      token: '/oauth2/v2.0/token',
      end_session: '/oauth2/v2.0/logout',
      jwks: '/discovery/v2.0/keys',
      userinfo: '/openid/userinfo',
      revocation: '/oauth2/v2.0/revoke',
    },
  });

  // Every id token carries `sid`, as Entra's do (oidc-provider adds it only for back-channel logout).
  provider.Client.prototype.includeSid = () => true;

  if (apis.length) { // Entra's app-only and on-behalf-of grants
    provider.registerGrantType('client_credentials', clientCredentialsGrant, ['scope']);
    provider.registerGrantType(JWT_BEARER, onBehalfOfGrant, ['assertion', 'scope', 'requested_token_use']);
  }

  provider.use(async (ctx, next) => {
    // Entra's prompt values that oidc-provider refuses: select_account shows the login form
    // again, create is dropped.
    if (ctx.path === '/oauth2/v2.0/authorize' && typeof ctx.query.prompt === 'string') {
      const query = { ...ctx.query };
      const prompts = new Set(query.prompt.split(' ')
        .map((p) => (p === 'select_account' ? 'login' : p))
        .filter((p) => p && p !== 'create'));
      if (prompts.size) query.prompt = [...prompts].join(' '); else delete query.prompt;
      ctx.query = query;
    }
    // A client marked ignores_max_age meets a provider that drops max_age (and so sends no auth_time).
    if (ctx.path === '/oauth2/v2.0/authorize' && ctx.query.max_age !== undefined
        && cfg.clients.find((c) => c.client_id === ctx.query.client_id)?.ignores_max_age) {
      const { max_age: _dropped, ...query } = ctx.query;
      ctx.query = query;
    }
    // A claims request for authentication contexts: the sign-in form again, then `acrs` (see acrsAsked).
    if (ctx.path === '/oauth2/v2.0/authorize' && typeof ctx.query.claims === 'string') {
      const acrs = acrsAsked(ctx.query.claims);
      if (acrs.length) ctx.query = { ...ctx.query, prompt: 'login', x_acrs: acrs.join(' ') };
    }
    let grantType;
    let apiScopesAsked; // a refresh for an API: minted after oidc-provider answered
    // MSAL sends offline_access again with every refresh; the refresh token never holds it here.
    if (ctx.method === 'POST' && ctx.path === '/oauth2/v2.0/token' && ctx.is('application/x-www-form-urlencoded')) {
      const chunks = [];
      for await (const chunk of ctx.req) chunks.push(chunk);
      const body = new URLSearchParams(Buffer.concat(chunks).toString());
      grantType = body.get('grant_type');
      if (grantType === 'refresh_token' && body.has('scope')) {
        const scopes = body.get('scope').split(' ').filter((s) => s !== 'offline_access');
        body.set('scope', scopes.join(' '));
        // Entra's refresh tokens serve any API (every API here counts as admin-consented): the
        // API scopes are taken out of oidc-provider's check and the token is minted below.
        apiScopesAsked = apis.length ? resolveApiScopes(scopes) : undefined;
        if (apiScopesAsked?.error) {
          ctx.status = 400;
          ctx.body = { error: 'invalid_scope', error_description: apiScopesAsked.error };
          return;
        }
        if (apiScopesAsked) {
          const rest = scopes.filter((s) => s && !parseApiScope(s));
          if (rest.length) body.set('scope', rest.join(' ')); else body.delete('scope');
        }
      }
      if (grantType === 'refresh_token') await widenToGrant(provider, body.get('refresh_token'));
      // A client assertion from a federated credential (see "Client credentials").
      const refused = federatedClientAuth(body);
      if (refused) {
        ctx.status = 401;
        ctx.body = { error: 'invalid_client', error_description: refused };
        return;
      }
      ctx.req.body = body.toString();
    }
    if (await interact(ctx, provider, mount)) return;
    await next();
    if (ctx.path === '/oauth2/v2.0/logout/confirm') frontchannelPage(ctx); // front-channel logout
    if (ctx.req.multiTenantDiscovery && ctx.status === 200 && ctx.body?.issuer) {
      ctx.body = { ...ctx.body, issuer: `${origin}/{tenantid}/v2.0` };
    }
    // A sign-in or refresh for an API: its Entra-shaped token instead of oidc-provider's opaque
    // one, and `scope` with the API scopes as asked (MSAL files the token under them).
    if (!apis.length || ctx.status !== 200 || !ctx.body?.access_token) return;
    const asked = grantType === 'authorization_code'
      ? resolveApiScopes((ctx.body.scope || '').split(' ')) : grantType === 'refresh_token' && apiScopesAsked;
    if (!asked) return;
    if (asked.error) {
      ctx.status = 400;
      ctx.body = { error: 'invalid_scope', error_description: asked.error };
      return;
    }
    const { client } = ctx.oidc;
    const ttl = accessTokenTtl(client.clientId);
    ctx.body.access_token = apiAccessToken({
      api: asked.api,
      prefix: asked.prefix,
      azp: client.clientId,
      azpacr: authenticatedBy(client),
      ttl,
      user: claimsFor(ctx.oidc.entities.Account.accountId),
      scp: asked.scp,
    });
    Object.assign(ctx.body, { scope: asked.requested.join(' '), expires_in: ttl });
  });
  provider.on('server_error', (ctx, err) => console.error('server_error', err));
  return { mount, provider, handle: provider.callback() };
}

const mounts = cfg.tenants.map(mountProvider);

// A new signing key signs everything from now on (id tokens, API access tokens); the older ones
// stay published, so tokens issued before still validate. oidc-provider reads its keys once, so
// the providers are built again; sessions, codes, grants and refresh tokens live in `records` and
// the cookie keys stay the same, so all of them carry over.
function rotateKeys() {
  signingKeys.unshift(newSigningKey(`local-key-${signingKeys.length + 1}`));
  mounts.splice(0, mounts.length, ...cfg.tenants.map(mountProvider));
}
const requestLog = [];
let faults = [];

function readJson(req) {
  return new Promise((resolve) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString() || '{}')); } catch { resolve({}); }
    });
  });
}

function sendJson(res, value, status = 200) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify(value));
}

// --- Errors at the authorize endpoint -------------------------------------------------------------
// A fault {"path": "/oauth2/v2.0/authorize", "redirectError": {"error", "error_description"}} answers
// the next sign-ins as Entra answers one it refuses (consent missing, MFA required, a user from
// another tenant...): the browser goes back to the request's redirect_uri, which must be a
// registered one, with error, error_description and the request's state; for
// response_mode=form_post, as a page whose form posts them there.
function redirectWithError(res, url, answer) {
  const redirectUri = url.searchParams.get('redirect_uri') || '';
  if (!cfg.clients.some((c) => (c.redirect_uris || []).includes(redirectUri))) {
    return sendJson(res, { error: 'invalid_request', error_description: 'redirect_uri is not registered' }, 400);
  }
  const fields = {
    error: String(answer.error || 'invalid_request'),
    error_description: String(answer.error_description || ''),
  };
  if (url.searchParams.has('state')) fields.state = url.searchParams.get('state');
  if (url.searchParams.get('response_mode') === 'form_post') {
    const esc = (v) => v.replace(/&/g, '&amp;').replace(/"/g, '&quot;').replace(/</g, '&lt;');
    const inputs = Object.entries(fields)
      .map(([name, value]) => `<input type="hidden" name="${name}" value="${esc(value)}"/>`).join('');
    res.setHeader('content-type', 'text/html; charset=utf-8');
    return res.end(`<!DOCTYPE html><html><body><form method="post" action="${esc(redirectUri)}">${inputs}</form>`
      + '<script>document.forms[0].submit()</script></body></html>');
  }
  const target = new URL(redirectUri);
  for (const [name, value] of Object.entries(fields)) target.searchParams.set(name, value);
  res.statusCode = 302;
  res.setHeader('location', target.toString());
  return res.end();
}

async function helper(req, res, url) {
  if (url.pathname === '/__health') return res.end('ok');
  if (url.pathname === '/__log') {
    sendJson(res, requestLog);
    if (req.method === 'POST') requestLog.length = 0;
    return undefined;
  }
  if (url.pathname === '/__fault') {
    if (req.method === 'DELETE') faults = [];
    else faults.push({ status: 0, delay: 0, times: 1, ...(await readJson(req)) });
    return sendJson(res, faults);
  }
  if (url.pathname === '/__keys/rotate') {
    if (req.method === 'POST') rotateKeys();
    return sendJson(res, { kid: signingKeys[0].kid, kids: signingKeys.map((k) => k.kid) });
  }
  if (url.pathname === '/__mint' && req.method === 'POST') {
    const { claims, header, kid } = await readJson(req);
    if (!claims || typeof claims !== 'object' || Array.isArray(claims)) {
      return sendJson(res, { error: 'invalid_request', error_description: 'claims must be a JSON object' }, 400);
    }
    if (header !== undefined && (!header || typeof header !== 'object' || Array.isArray(header))) {
      return sendJson(res, { error: 'invalid_request', error_description: 'header must be a JSON object' }, 400);
    }
    const key = kid === undefined ? signingKeys[0] : signingKeys.find((k) => k.kid === kid);
    if (!key) return sendJson(res, { error: 'invalid_request', error_description: `no signing key ${kid}` }, 400);
    return sendJson(res, { token: signJwt(claims, { header, key }) });
  }
  if (url.pathname === '/__frontchannel') { // front-channel logout, see frontchannelPage
    if (req.method === 'DELETE') {
      frontchannelUris.clear();
      frontchannelLoaded.length = 0;
    } else if (req.method === 'POST' && url.searchParams.has('register')) {
      const { client_id: clientId, uris } = await readJson(req);
      if (typeof clientId !== 'string' || !Array.isArray(uris)) {
        return sendJson(res, { error: 'invalid_request', error_description: 'client_id and uris' }, 400);
      }
      frontchannelUris.set(clientId, uris);
    }
    sendJson(res, frontchannelLoaded);
    if (req.method === 'POST' && !url.searchParams.has('register')) frontchannelLoaded.length = 0;
    return undefined;
  }
  if (url.pathname === '/__revoke') {
    let dropped = 0;
    for (const key of [...records.keys()]) {
      if (key.startsWith('RefreshToken:')) { records.delete(key); dropped += 1; }
    }
    return sendJson(res, { dropped });
  }
  return sendJson(res, { error: 'not_found' }, 404);
}

async function route(req, res) {
  const url = new URL(req.url, origin);
  if (!req.socket.encrypted) {
    // Say this hop is plain http: oidc-provider then does not warn about a missing TLS proxy.
    req.headers['x-forwarded-proto'] = 'http';
  }
  if (url.pathname.startsWith('/__')) return helper(req, res, url);
  requestLog.push({ t: Date.now(), method: req.method, path: url.pathname, ua: req.headers['user-agent'] || '' });
  // What the end-session endpoint got (logout_hint, post_logout_redirect_uri...), for tests.
  if (url.pathname.endsWith('/oauth2/v2.0/logout')) requestLog.at(-1).query = Object.fromEntries(url.searchParams);
  if (requestLog.length > 10000) requestLog.shift();

  const fault = faults.find((f) => f.times > 0 && url.pathname.endsWith(f.path || ''));
  if (fault) {
    fault.times -= 1;
    if (fault.delay) await new Promise((resolve) => { setTimeout(resolve, fault.delay); });
    if (fault.redirectError) return redirectWithError(res, url, fault.redirectError);
    if (typeof fault.body === 'string') {
      res.statusCode = fault.status || 200;
      res.setHeader('content-type', fault.contentType || 'text/html; charset=utf-8');
      return res.end(fault.body);
    }
    if (fault.status) {
      return sendJson(res, { error: 'server_error', error_description: 'injected fault' }, fault.status);
    }
  }

  // Microsoft Graph's group memberships (graph.mjs), with the Graph API of `apis` (config `graph`).
  if (url.pathname.startsWith('/graph/') && cfg.graph) {
    return graphRequest(req, res, url, {
      origin, users: cfg.users, verify: verifyOwnJwt, graphClientId: cfg.graph.client_id, pageSize: cfg.graph.page_size,
    });
  }

  // Entra's multi-tenant discovery: the tenant's document, with the issuer as a template.
  if (/^\/(organizations|common)\/v2\.0\/\.well-known\/openid-configuration$/.test(url.pathname)) {
    const tenant = mounts.find((m) => m.mount === `/${cfg.tid}`) || mounts[0];
    const rest = `/.well-known/openid-configuration${url.search}`;
    req.multiTenantDiscovery = true;
    req.originalUrl = tenant.mount + rest;
    req.baseUrl = tenant.mount;
    req.url = rest;
    return tenant.handle(req, res);
  }

  const target = mounts.find((m) => url.pathname === m.mount || url.pathname.startsWith(`${m.mount}/`));
  if (!target) return sendJson(res, { error: 'not_found' }, 404);
  let rest = req.url.slice(target.mount.length) || '/';
  if (rest.startsWith('/v2.0/.well-known/')) rest = rest.slice('/v2.0'.length);
  // Entra takes logout?post_logout_redirect_uri=... without client_id; find the client by its URI.
  const postLogout = url.searchParams.get('post_logout_redirect_uri');
  if (rest.startsWith('/oauth2/v2.0/logout') && postLogout && !url.searchParams.has('client_id')
      && !url.searchParams.has('id_token_hint')) {
    const client = cfg.clients.find((c) => (c.post_logout_redirect_uris || []).includes(postLogout));
    if (client) rest += `&client_id=${encodeURIComponent(client.client_id)}`;
  }
  req.originalUrl = target.mount + rest;
  req.baseUrl = target.mount;
  req.url = rest;
  return target.handle(req, res);
}

const server = cfg.tls
  ? https.createServer({ cert: fs.readFileSync(cfg.tls.cert), key: fs.readFileSync(cfg.tls.key) }, route)
  : http.createServer(route);
const servers = [server];
server.listen(cfg.port, cfg.host, () => {
  console.log(`idp listening on ${origin}`);
  for (const m of mounts) console.log(`  ${origin}${m.mount}/v2.0/.well-known/openid-configuration`);
});
if (browserOrigin) {
  const browserServer = http.createServer(route);
  servers.push(browserServer);
  browserServer.listen(cfg.browserPort, cfg.host, () => console.log(`idp pages for browsers on ${browserOrigin}`));
}
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    let open = servers.length;
    for (const s of servers) {
      s.close(() => { open -= 1; if (!open) process.exit(0); });
      s.closeAllConnections();
    }
  });
}
