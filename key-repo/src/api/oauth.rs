//! The built-in authorization server: token endpoint (client credentials, RFC 6749 §4.4),
//! metadata (RFC 8414) and JWKS.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use axum::{Extension, Json};
use foundations::audit::AuditEvent;
use foundations::now_unix;
use foundations::token::Jwks;

use super::{AppState, PeerAddr, json_no_store, peer_addr};
use crate::error::ApiError;
use crate::model;

/// Reads `Authorization: Basic` client credentials (RFC 6749 §2.3.1: form-encoded, then
/// base64).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") || b64.len() > 1024 {
        return None;
    }
    let raw = foundations::b64_decode(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((
        crate::util::form_decode(id)?,
        crate::util::form_decode(secret)?,
    ))
}

fn oauth_err(code: &'static str, status: StatusCode, detail: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        code,
        status,
        detail: detail.into(),
    }
}

pub(super) async fn token(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let s = &st.inner;
    if let Some(Extension(PeerAddr(addr))) = &peer
        && !s.by_addr.check(&addr.ip())
    {
        return Err(ApiError::RateLimited);
    }
    // Read only now, after the rate limit (the route's guard capped its size).
    let body = axum::body::to_bytes(body, s.cfg.limits.max_body_bytes)
        .await
        .map_err(|_| ApiError::TooLarge)?;
    let form = token_form(&headers, &body)?;
    let param = |k: &str| form_param(&form, k);
    let mut event = AuditEvent {
        time: now_unix(),
        actor: "anonymous".into(),
        peer: peer_addr(&peer).map(|p| p.to_string()),
        action: "token.issue".into(),
        ..Default::default()
    };
    let authenticated = authenticate_client(s, &headers, &form).await?;
    let client = match authenticated {
        Ok(c) => c,
        Err(detail) => {
            // Nobody answers for this one (the client id is only claimed): audited at a
            // bounded rate per source, like the gate's refusals.
            event.result = "denied:invalid_client".into();
            st.audit_refusal(peer_addr(&peer), event)?;
            return Err(oauth_err(
                "invalid_client",
                StatusCode::UNAUTHORIZED,
                detail,
            ));
        }
    };
    event.actor = client.client_id.clone();
    // Per-client limit after authentication: client ids are not secret, so counting
    // unauthenticated attempts against them would let anyone lock a client out. Failed
    // attempts are bounded by the per-address limit above (secrets are 256-bit random).
    if !s.by_client.check(&client.client_id) {
        event.result = "denied:rate_limited".into();
        s.store.audit().record(event)?;
        return Err(ApiError::RateLimited);
    }
    let resp = crate::auth::issue_token(&s.cfg, &s.signer, &client, param("scope"), now_unix())?;
    match resp {
        Ok(t) => {
            event.result = "ok".into();
            s.store.audit().record(event)?;
            Ok(json_no_store(StatusCode::OK, &t))
        }
        Err(code) => {
            event.result = format!("denied:{code}");
            s.store.audit().record(event)?;
            Err(oauth_err(
                code,
                StatusCode::BAD_REQUEST,
                "scope not allowed",
            ))
        }
    }
}

/// The value of form field `k`, if present.
fn form_param<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

/// The token request's form (RFC 6749 §4.4.2): form-encoded UTF-8, client credentials not in
/// the body, grant type `client_credentials`.
fn token_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.split(';').next().is_some_and(|m| {
        m.trim()
            .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    }) {
        return Err(oauth_err(
            "invalid_request",
            StatusCode::BAD_REQUEST,
            "content type",
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| oauth_err("invalid_request", StatusCode::BAD_REQUEST, "utf-8"))?;
    let form = crate::util::parse_form(text)
        .ok_or_else(|| oauth_err("invalid_request", StatusCode::BAD_REQUEST, "malformed form"))?;
    let param = |k: &str| form_param(&form, k);
    if form.iter().any(|(k, _)| k == "client_secret") {
        // RFC 6749 §2.3: one authentication method per request.
        return Err(oauth_err(
            "invalid_request",
            StatusCode::BAD_REQUEST,
            "credentials in body",
        ));
    }
    if param("grant_type") != Some("client_credentials") {
        return Err(oauth_err(
            "unsupported_grant_type",
            StatusCode::BAD_REQUEST,
            "grant_type",
        ));
    }
    Ok(form)
}

/// Authenticates the client of a token request by exactly one method: `client_secret_basic`
/// (RFC 6749 §2.3.1) or `private_key_jwt` (RFC 7523 §2.2). `Err` for a malformed request,
/// `Ok(Err(detail))` for credentials that do not authenticate anyone.
async fn authenticate_client(
    s: &super::Inner,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Result<crate::clients::ClientRecord, String>, ApiError> {
    let param = |k: &str| form_param(form, k);
    let basic = basic_credentials(headers);
    Ok(match (basic, param("client_assertion_type")) {
        (Some(_), Some(_)) => {
            return Err(oauth_err(
                "invalid_request",
                StatusCode::BAD_REQUEST,
                "two client authentication methods",
            ));
        }
        // client_secret_basic (RFC 6749 §2.3.1).
        (Some((client_id, secret)), None) => s
            .clients
            .authenticate(&client_id, &secret)
            .await?
            .ok_or_else(|| format!("client_secret_basic failed for {client_id:?}")),
        // private_key_jwt (RFC 7523 §2.2).
        (None, Some(t)) if t == crate::auth::JWT_BEARER => match param("client_assertion") {
            Some(a) => crate::auth::verify_client_assertion(
                &s.cfg,
                &s.clients,
                &s.replay,
                a,
                param("client_id"),
                now_unix(),
            ),
            None => Err("client_assertion missing".into()),
        },
        (None, _) => Err("no supported client authentication".into()),
    })
}

pub(super) async fn as_metadata(State(st): State<AppState>) -> Response {
    let iss = &st.inner.cfg.issuer;
    // RFC 8414 §2. response_types_supported is REQUIRED but this server has no
    // authorization endpoint, so the list is empty.
    json_no_store(
        StatusCode::OK,
        &serde_json::json!({
            "issuer": iss,
            "token_endpoint": format!("{iss}/oauth/token"),
            "jwks_uri": format!("{iss}/.well-known/jwks.json"),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "private_key_jwt"],
            "response_types_supported": [],
            "scopes_supported": [model::SCOPE_WRITE, model::SCOPE_READ, model::SCOPE_REVOKE,
                                 model::SCOPE_ADMIN, model::SCOPE_AUDIT,
                                 model::SCOPE_RELEASES_WRITE, model::SCOPE_RELEASES_READ],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        }),
    )
}

pub(super) async fn jwks(State(st): State<AppState>) -> Response {
    Json(Jwks {
        keys: vec![st.inner.signer.jwk().clone()],
    })
    .into_response()
}
