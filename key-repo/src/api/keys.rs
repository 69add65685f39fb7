//! The keys resource server: store, read, inspect and revoke release keys, and read the
//! audit trail. The gate has authenticated the caller; here its scopes, products and
//! ownership are checked, and every outcome is audited.
//!
//! Who may do what (issue 13 item 5):
//!
//! * store: `keys:write` and the product granted; a kid is immutable and held by the client
//!   that stored it (its issuer and client id are kept with the key);
//! * read, inspect: `keys:read` (inspect also `keys:write`) and the product granted;
//! * revoke: the client that stored the key (with `keys:revoke` and the product still
//!   granted), or an administrator (`keys:admin`);
//! * a kid held by a product the caller is not granted is never told apart from a kid
//!   nobody holds: reads answer `404 not-found` for both, writes `403 product-not-granted`
//!   as for any product the caller is not granted; the audit record says which it was.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use foundations::audit::AuditEvent;
use foundations::now_unix;
use serde::Deserialize;

use super::{AppState, PeerAddr, json_no_store, peer_addr};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::model::{self, KeyBody};
use crate::store::{Loaded, Owner, PutOutcome, RevokeOutcome};

/// The operation being authorised, for scopes and the audit record.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Create,
    Read,
    Meta,
    Revoke,
    Audit,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Create => "key.create",
            Action::Read => "key.read",
            Action::Meta => "key.meta",
            Action::Revoke => "key.revoke",
            Action::Audit => "audit.read",
        }
    }
}

/// The audit record of a request (actor `anonymous` until the caller is known).
pub(super) fn event(peer: Option<SocketAddr>, action: Action, kid: Option<&str>) -> AuditEvent {
    AuditEvent {
        time: now_unix(),
        actor: "anonymous".into(),
        peer: peer.map(|p| p.to_string()),
        action: action.name().into(),
        kid: kid.map(str::to_string),
        ..Default::default()
    }
}

/// A request in progress: who (once known) and the audit record being built.
struct Ctx<'a> {
    st: &'a AppState,
    event: AuditEvent,
}

impl<'a> Ctx<'a> {
    fn new(st: &'a AppState, peer: Option<SocketAddr>, action: Action, kid: Option<&str>) -> Self {
        Ctx {
            st,
            event: event(peer, action, kid),
        }
    }

    /// Records a refusal in the audit log and returns the error.
    fn deny(&mut self, err: ApiError) -> ApiError {
        let result = match &err {
            ApiError::Unauthenticated(_) => "denied:invalid_token",
            ApiError::InsufficientScope(_) => "denied:insufficient_scope",
            ApiError::ProductNotGranted(_) => "denied:product_not_granted",
            ApiError::NotOwner => "denied:not_owner",
            ApiError::NotFound => "not_found",
            ApiError::Gone => "gone",
            ApiError::Conflict(_) => "conflict",
            _ => "denied:bad_request",
        };
        self.deny_as(result, None, err)
    }

    /// Records a refusal with the given result (and reason) and returns `err`, which the
    /// client gets: the audit record may say more than the answer.
    fn deny_as(&mut self, result: &str, reason: Option<&str>, err: ApiError) -> ApiError {
        self.event.result = result.into();
        self.event.reason = reason.map(str::to_string);
        if let Err(e) = self
            .st
            .inner
            .store
            .audit()
            .record(std::mem::take(&mut self.event))
        {
            return ApiError::Internal(format!("audit append failed: {e}"));
        }
        err
    }

    fn ok(&mut self, result: &str) -> Result<(), ApiError> {
        self.event.result = result.into();
        self.st
            .inner
            .store
            .audit()
            .record(std::mem::take(&mut self.event))?;
        Ok(())
    }

    /// As [`Ctx::ok`], and returns once the record is on disk; an error means the caller
    /// must not answer with what the record describes (fail closed).
    async fn ok_durable(&mut self, result: &str) -> Result<(), ApiError> {
        self.event.result = result.into();
        self.st
            .inner
            .store
            .audit()
            .record_durable(std::mem::take(&mut self.event))
            .await
            .map_err(|e| ApiError::AuditUnavailable(e.to_string()))?;
        Ok(())
    }

    /// Records who the gate authenticated and checks the scope.
    fn authorize(&mut self, p: &Principal, scopes: &[&'static str]) -> Result<(), ApiError> {
        self.event.actor = p.client_id.clone();
        self.event.issuer = Some(p.issuer.clone());
        if !scopes.iter().any(|s| p.has_scope(s)) {
            return Err(self.deny(ApiError::InsufficientScope(scopes[0])));
        }
        Ok(())
    }
}

/// The `{kid}` path segment as extracted (a rejection is answered by [`check_kid`]).
type KidPath = Result<Path<String>, axum::extract::rejection::PathRejection>;

/// The `{kid}` path segment, validated (1 to 128 URL-safe characters).
fn check_kid(kid: &KidPath) -> Result<String, ApiError> {
    match kid {
        Ok(Path(kid)) if crate::util::valid_kid(kid) => Ok(kid.clone()),
        _ => Err(ApiError::BadRequest("kid".into())),
    }
}

/// What every request on one key extracts: the state, the peer, the caller the gate
/// authenticated, and the `{kid}` path segment (validated by [`KeyCall::begin`]).
pub(super) struct KeyCall {
    st: AppState,
    peer: Option<SocketAddr>,
    p: Arc<Principal>,
    kid: KidPath,
}

impl FromRequestParts<AppState> for KeyCall {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let peer = parts.extensions.get::<PeerAddr>().map(|a| a.0);
        // The gate in front of every key route puts the caller here; its absence is a bug.
        let p = parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no authenticated caller".into()))?;
        let kid = Path::<String>::from_request_parts(parts, st).await;
        Ok(KeyCall {
            st: st.clone(),
            peer,
            p,
            kid,
        })
    }
}

impl KeyCall {
    /// How every request on one key starts: the kid validated, the audit record opened,
    /// and the caller recorded and checked for one of `scopes`.
    fn begin(
        &self,
        action: Action,
        scopes: &[&'static str],
    ) -> Result<(String, Ctx<'_>), ApiError> {
        let kid = check_kid(&self.kid)?;
        let mut cx = Ctx::new(&self.st, self.peer, action, Some(&kid));
        cx.authorize(&self.p, scopes)?;
        Ok((kid, cx))
    }
}

/// The key's record for reads, meta and revoke, once the caller may know it exists: a kid
/// of a product the caller is not granted (`admin_ok`: unless it is an administrator) is
/// answered exactly like a kid never written; a revoked key is gone.
fn lookup(cx: &mut Ctx<'_>, p: &Principal, kid: &str, admin_ok: bool) -> Result<Loaded, ApiError> {
    let Some(loaded) = cx.st.inner.store.load(kid)? else {
        return Err(cx.deny(ApiError::NotFound));
    };
    cx.event.product = Some(loaded.meta.product.clone());
    let admin = admin_ok && p.has_scope(model::SCOPE_ADMIN);
    if !admin && !p.grants_product(&loaded.meta.product) {
        return Err(cx.deny_as(
            "denied:product_not_granted",
            Some("kid held by a product not granted"),
            ApiError::NotFound,
        ));
    }
    if loaded.meta.state != "active" {
        return Err(cx.deny(ApiError::Gone));
    }
    Ok(loaded)
}

pub(super) async fn put_key(
    call: KeyCall,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let (kid, mut cx) = call.begin(Action::Create, &[model::SCOPE_WRITE])?;
    let (st, p) = (&call.st, &*call.p);
    let body = body.map_err(|_| cx.deny(ApiError::TooLarge))?;
    let req: KeyBody = serde_json::from_slice(&body)
        .map_err(|e| cx.deny(ApiError::BadRequest(format!("body: {e}"))))?;
    let product = foundations::normalize_product(&req.product)
        .ok_or_else(|| cx.deny(ApiError::BadRequest("product".into())))?;
    cx.event.product = Some(product.clone());
    // A kid held by a product the caller is not granted is refused exactly like a product
    // the caller is not granted (same status, same problem), so the refusal does not tell
    // whether the kid exists; the record is looked up in both cases, which cost the same.
    let held_by = st.inner.store.meta(&kid)?.map(|m| m.product);
    if !p.grants_product(&product) {
        return Err(cx.deny(ApiError::ProductNotGranted(product)));
    }
    if held_by.is_some_and(|h| h != product && !p.grants_product(&h)) {
        return Err(cx.deny_as(
            "denied:product_not_granted",
            Some("kid held by another product"),
            ApiError::ProductNotGranted(product),
        ));
    }
    let cose_key = zeroize::Zeroizing::new(
        foundations::b64_decode(&req.cose_key)
            .ok_or_else(|| cx.deny(ApiError::BadRequest("cose_key encoding".into())))?,
    );
    model::validate_cose_key(&cose_key).map_err(|e| cx.deny(ApiError::BadRequest(e.into())))?;
    let owner = Owner {
        issuer: &p.issuer,
        client_id: &p.client_id,
    };
    let granted = |x: &str| p.grants_product(x);
    let outcome = st
        .inner
        .store
        .put_key(&kid, &product, &cose_key, owner, &granted, cx.event.clone())
        .await?;
    match outcome {
        PutOutcome::Created(m) => Ok(json_no_store(StatusCode::CREATED, &m)),
        PutOutcome::Unchanged(m) => Ok(json_no_store(StatusCode::OK, &m)),
        PutOutcome::Revoked => Err(ApiError::Gone),
        // Another product took the kid since the check above.
        PutOutcome::Foreign => Err(ApiError::ProductNotGranted(product)),
        _ => Err(ApiError::Conflict("different material or owner")),
    }
}

pub(super) async fn get_key(call: KeyCall) -> Result<Response, ApiError> {
    let (kid, mut cx) = call.begin(Action::Read, &[model::SCOPE_READ])?;
    let (st, p) = (&call.st, &*call.p);
    // One read of the record; the checks apply to exactly what is decrypted.
    let loaded = lookup(&mut cx, p, &kid, false)?;
    let key = st.inner.store.open_sealed(&loaded.meta, &loaded.sealed)?;
    // The read is on disk before the key leaves the server: if it cannot be recorded, the
    // key is not returned (issue 13 item 4).
    cx.ok_durable("ok").await?;
    Ok(json_no_store(
        StatusCode::OK,
        &KeyBody {
            product: loaded.meta.product,
            cose_key: foundations::b64(&key),
        },
    ))
}

pub(super) async fn get_meta(call: KeyCall) -> Result<Response, ApiError> {
    let (kid, mut cx) = call.begin(
        Action::Meta,
        &[model::SCOPE_READ, model::SCOPE_WRITE, model::SCOPE_ADMIN],
    )?;
    let p = &*call.p;
    let loaded = lookup(&mut cx, p, &kid, true)?;
    cx.ok("ok")?;
    Ok(json_no_store(StatusCode::OK, &loaded.meta))
}

pub(super) async fn revoke(call: KeyCall) -> Result<Response, ApiError> {
    let (kid, mut cx) = call.begin(Action::Revoke, &[model::SCOPE_REVOKE, model::SCOPE_ADMIN])?;
    let (st, p) = (&call.st, &*call.p);
    let loaded = lookup(&mut cx, p, &kid, true)?;
    // Only the client that stored the key, or an administrator (issue 13 item 5: another
    // publisher of the same product revoked a key it did not store).
    let caller = Owner {
        issuer: &p.issuer,
        client_id: &p.client_id,
    };
    if !p.has_scope(model::SCOPE_ADMIN) && !loaded.owned_by(caller, &st.inner.cfg.issuer) {
        return Err(cx.deny(ApiError::NotOwner));
    }
    match st.inner.store.revoke(&kid, cx.event.clone()).await? {
        RevokeOutcome::Revoked(m) => Ok(json_no_store(StatusCode::OK, &m)),
        RevokeOutcome::AlreadyRevoked => Err(ApiError::Gone),
        _ => Err(ApiError::NotFound),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    from: u64,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn audit(
    State(st): State<AppState>,
    peer: Option<Extension<PeerAddr>>,
    Extension(p): Extension<Arc<Principal>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let mut cx = Ctx::new(&st, peer_addr(&peer), Action::Audit, None);
    cx.authorize(&p, &[model::SCOPE_AUDIT])?;
    let Query(q) = q.map_err(|e| cx.deny(ApiError::BadRequest(e.to_string())))?;
    let max = st.inner.cfg.limits.audit_page_max;
    let limit = q.limit.unwrap_or(max).clamp(1, max);
    // Refusals counted so far are summarised first, so the page counts every one.
    st.flush_refusals()?;
    let log = st.inner.store.audit();
    // Everything recorded before this request is visible to it (drained under the lock).
    let (records, head) = {
        let mut head = log.lock()?;
        log.drain_locked(&mut head)?;
        (log.page(q.from, limit)?, *head)
    };
    cx.ok("ok")?;
    Ok(json_no_store(
        StatusCode::OK,
        &serde_json::json!({
            "records": records,
            "head": { "next_seq": head.next_seq, "mac": hex::encode(head.last_mac) },
        }),
    ))
}
