// Microsoft Graph, as much of it as group-based authorization needs, for idp.mjs.
//
// Group memberships: a login "groups-<N>" (or "groups-<N>-<anything>") is a member of the groups
// "group-0" ... "group-<N-1>", whose object ids are groupId(i); `users[login].groups` in the
// config lists ids of its own instead. An id token names at most GROUPS_IN_TOKEN groups, as
// Entra's do; a user in more gets Entra's overage marker instead of the list (`_claim_names` and
// `_claim_sources` pointing at Graph). A login "hasgroups-<N>" gets the implicit flow's marker
// `hasgroups: true` instead.
//
//   GET <origin>/graph/v1.0/me/transitiveMemberOf[?$top=..&$select=id]
//     The signed-in user's memberships (a directory role first, then the groups), with a bearer
//     access token for the Graph API registration (scope "<origin>/graph/User.Read"): pages of at
//     most min($top, pageSize) objects linked by @odata.nextLink, as Graph pages them.
//     401 without a valid token for Graph, 403 Authorization_RequestDenied without a scope that
//     allows reading memberships.
import crypto from 'node:crypto';

// Entra's limit for groups in a JWT; beyond it the token carries the overage marker.
export const GROUPS_IN_TOKEN = 200;
const SCOPES_READING_MEMBERSHIPS = ['User.Read', 'GroupMember.Read.All', 'Directory.Read.All'];

export const groupId = (index) => crypto.createHash('sha256').update(`group-${index}`).digest('hex')
  .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12}).*$/, '$1-$2-$3-$4-$5');

// The object ids of the groups `login` is a member of.
export function groupsOf(login, users = {}) {
  if (Array.isArray(users[login]?.groups)) return users[login].groups;
  const match = /^(?:has)?groups-(\d+)(?:-|$)/.exec(login);
  const count = match ? Math.min(Number(match[1]), 100000) : 0;
  return Array.from({ length: count }, (_, i) => groupId(i));
}

// The group claims of an id token for `login`: the list, or Entra's overage marker.
export function groupClaims(login, { users, tid, oid }) {
  const groups = groupsOf(login, users);
  if (!groups.length) return {};
  if (login.startsWith('hasgroups-')) return { groups: undefined, hasgroups: true };
  if (groups.length <= GROUPS_IN_TOKEN) return { groups };
  return {
    groups: undefined,
    _claim_names: { groups: 'src1' },
    _claim_sources: { src1: { endpoint: `https://graph.windows.net/${tid}/users/${oid}/getMemberObjects` } },
  };
}

function graphError(res, status, code, message) {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ error: { code, message } }));
}

// Answers a request below <origin>/graph; `verify` returns a JWT's claims or throws.
export function graphRequest(req, res, url, { origin, users, verify, graphClientId, pageSize = 100 }) {
  if (url.pathname !== '/graph/v1.0/me/transitiveMemberOf' || req.method !== 'GET') {
    return graphError(res, 404, 'Request_ResourceNotFound', `Resource not found for the segment '${url.pathname}'.`);
  }
  const bearer = /^Bearer (\S+)$/.exec(req.headers.authorization || '');
  let claims;
  try {
    if (!bearer) throw new Error('no bearer token');
    claims = verify(bearer[1]);
    if (claims.aud !== graphClientId) throw new Error('not a token for Graph');
  } catch (err) {
    return graphError(res, 401, 'InvalidAuthenticationToken', `Access token validation failure: ${err.message}.`);
  }
  const scopes = String(claims.scp || '').split(' ');
  if (!scopes.some((s) => SCOPES_READING_MEMBERSHIPS.includes(s))) {
    return graphError(res, 403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
  }
  const objects = [
    { '@odata.type': '#microsoft.graph.directoryRole', id: groupId(`role-${claims.sub}`) },
    ...groupsOf(claims.sub, users).map((id) => ({ '@odata.type': '#microsoft.graph.group', id })),
  ];
  const top = Number(url.searchParams.get('$top') || 100);
  if (!Number.isInteger(top) || top < 1 || top > 999) {
    return graphError(res, 400, 'Request_UnsupportedQuery', 'Invalid page size specified.');
  }
  const skip = Number(url.searchParams.get('$skiptoken') ? Buffer.from(url.searchParams.get('$skiptoken'), 'base64url').toString() : 0);
  const size = Math.min(top, pageSize);
  const page = objects.slice(skip, skip + size);
  const body = { '@odata.context': `${origin}/graph/v1.0/$metadata#directoryObjects`, value: page };
  if (skip + size < objects.length) {
    const next = new URL(url.pathname, origin);
    for (const [name, value] of url.searchParams) if (name !== '$skiptoken') next.searchParams.set(name, value);
    next.searchParams.set('$skiptoken', Buffer.from(String(skip + size)).toString('base64url'));
    body['@odata.nextLink'] = next.toString();
  }
  res.statusCode = 200;
  res.setHeader('content-type', 'application/json');
  return res.end(JSON.stringify(body));
}
