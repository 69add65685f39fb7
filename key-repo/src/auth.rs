//! Access-token validation (resource server side, `foundations::token::Verifier` over the
//! built-in issuer and the configured external ones) and issuance (built-in authorization
//! server), plus `private_key_jwt` client authentication.

use std::collections::HashMap;
use std::sync::Arc;

use foundations::token::{
    self, Audience, Claims, IssuerSpec, KeySource, Kind, TimeRules, TokenError, TokenSigner,
    Verifier,
};

use crate::Error;
use crate::clients::{ClientRecord, Registry};
use crate::config::Config;
use crate::model::TokenResponse;

pub use foundations::token::Principal;

/// Validates bearer tokens and remembers verified ones until they expire; tokens of the
/// built-in issuer are checked against the clients file on every request, cached or not.
#[derive(Debug)]
pub struct Authenticator {
    verifier: Verifier,
    /// `iss` of the built-in authorization server.
    issuer: String,
}

/// Why a bearer token was refused: logged and audited, never sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The token itself does not verify (or none was sent).
    #[error("{0}")]
    Token(#[from] TokenError),
    /// A genuine token of the built-in issuer whose client was removed or disabled.
    #[error("token of client {client_id:?} refused: {why}")]
    ClientWithdrawn {
        client_id: String,
        why: &'static str,
    },
}

impl Authenticator {
    /// The built-in issuer (this server's signing key, products in `products`) and every
    /// external issuer of the configuration.
    pub fn new(cfg: &Config, signer: &TokenSigner) -> Result<Self, Error> {
        let mut issuers = vec![IssuerSpec {
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            keys: KeySource::Static(signer.key_set()),
            products_claim: Some("products".into()),
        }];
        // External issuers always name a products claim (checked by the configuration):
        // an issuer whose tokens list no products is granted none.
        issuers.extend(cfg.external_issuers.iter().map(|e| e.spec()));
        let cas: Vec<_> = cfg
            .external_issuers
            .iter()
            .filter_map(|e| e.ca_file.clone())
            .collect();
        let rules = TimeRules {
            leeway: cfg.tokens.leeway_secs,
            max_lifetime: cfg.tokens.max_lifetime_secs,
        };
        Ok(Authenticator {
            verifier: Verifier::new(issuers, rules, cfg.tokens.cache_entries, &cas)?,
            issuer: cfg.issuer.clone(),
        })
    }

    /// Fetches the JWKS of every external issuer that has a URL (best effort, at start-up).
    pub async fn prefetch(&self) {
        self.verifier.prefetch().await;
    }

    /// Validates a bearer token (RFC 6750) and returns the caller. A token of the built-in
    /// issuer is good only while its client is registered and enabled and was not disabled
    /// after the token was issued: checked here on every request, so neither the cache of
    /// verified tokens nor the token's lifetime outlives the client. (Clients of external
    /// issuers are withdrawn at their issuer; their tokens end with their lifetime.)
    pub async fn authenticate(
        &self,
        token: &str,
        now: u64,
        clients: &Registry,
    ) -> Result<Arc<Principal>, Refusal> {
        let p = self.verifier.authenticate(token, now).await?;
        if p.issuer == self.issuer
            && let Err(why) = clients.check_token(&p.client_id, p.iat)
        {
            self.verifier.forget(token);
            return Err(Refusal::ClientWithdrawn {
                client_id: p.client_id.clone(),
                why,
            });
        }
        Ok(p)
    }
}

/// Issues an access token for an authenticated client (RFC 6749 §4.4, RFC 9068).
/// `requested` is the `scope` parameter; `None` grants every scope of the client's role.
pub fn issue_token(
    cfg: &Config,
    signer: &TokenSigner,
    client: &ClientRecord,
    requested: Option<&str>,
    now: u64,
) -> Result<Result<TokenResponse, &'static str>, Error> {
    let allowed = client.role.scopes();
    let scopes: Vec<&str> = match requested {
        None => allowed.to_vec(),
        Some(r) => {
            let mut v = Vec::new();
            for s in r.split(' ').filter(|s| !s.is_empty()) {
                if !allowed.contains(&s) {
                    return Ok(Err("invalid_scope"));
                }
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            if v.is_empty() { allowed.to_vec() } else { v }
        }
    };
    let scope = scopes.join(" ");
    let mut extra = serde_json::Map::new();
    extra.insert("products".into(), serde_json::json!(client.products));
    extra.insert("role".into(), serde_json::json!(client.role));
    // After the client was last disabled (normally now): see `ClientRecord::issue_time`.
    let iat = client.issue_time(now);
    let claims = Claims {
        iss: cfg.issuer.clone(),
        sub: Some(client.client_id.clone()),
        aud: Audience::One(cfg.audience.clone()),
        exp: iat + cfg.tokens.lifetime_secs,
        iat,
        nbf: Some(iat),
        jti: Some(hex::encode(foundations::random_bytes::<16>()?)),
        client_id: Some(client.client_id.clone()),
        scope: Some(scope.clone()),
        extra,
    };
    Ok(Ok(TokenResponse {
        access_token: signer.sign(&claims)?,
        token_type: "Bearer".into(),
        expires_in: cfg.tokens.lifetime_secs,
        scope,
    }))
}

/// `client_assertion_type` for JWT client authentication (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest lifetime accepted for a client assertion.
const MAX_ASSERTION_LIFETIME: u64 = 300;
/// Most remembered assertion ids; when full of unexpired ids, assertions are refused.
const MAX_REPLAY_ENTRIES: usize = 100_000;

/// Remembers the `jti` of accepted client assertions until they expire (replay defence,
/// RFC 7523 §3 item 7).
#[derive(Debug, Default)]
pub struct ReplayCache {
    seen: std::sync::Mutex<HashMap<String, u64>>,
}

impl ReplayCache {
    fn insert(&self, key: String, exp: u64, now: u64) -> Result<(), &'static str> {
        let mut m = self.seen.lock().map_err(|_| "replay cache poisoned")?;
        if m.len() >= MAX_REPLAY_ENTRIES {
            m.retain(|_, e| *e >= now);
            if m.len() >= MAX_REPLAY_ENTRIES {
                return Err("replay cache full");
            }
        }
        if m.get(&key).is_some_and(|e| *e >= now) {
            return Err("assertion replayed");
        }
        m.insert(key, exp);
        Ok(())
    }
}

/// Authenticates a client by a `private_key_jwt` assertion (RFC 7523 §2.2 and §3; OpenID
/// Connect Core §9): ES256 with the key registered for the client, `iss` = `sub` = client id,
/// `aud` the token endpoint (or the issuer), short-lived, `jti` never seen before.
pub fn verify_client_assertion(
    cfg: &Config,
    clients: &crate::clients::Registry,
    replay: &ReplayCache,
    assertion: &str,
    client_id_param: Option<&str>,
    now: u64,
) -> Result<ClientRecord, String> {
    // The unverified issuer names the client whose key must have signed it.
    let u = token::peek(assertion, Kind::ClientAssertion).map_err(|e| e.to_string())?;
    let sub = u.iss.clone();
    if client_id_param.is_some_and(|c| c != sub) {
        return Err("client_id differs from assertion iss".into());
    }
    let client = clients
        .get(&sub)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("unknown client {sub:?}"))?;
    if client.disabled {
        return Err(format!("client {sub:?} is disabled"));
    }
    let mut jwk = client
        .jwk
        .clone()
        .ok_or_else(|| format!("client {sub:?} has no registered key"))?;
    // The client has exactly one key: match it whatever kid the assertion names.
    jwk.kid = u.kid.clone();
    let keys = token::KeySet::from_jwks(&token::Jwks { keys: vec![jwk] });
    let rules = TimeRules {
        leeway: cfg.tokens.leeway_secs,
        max_lifetime: MAX_ASSERTION_LIFETIME,
    };
    // RFC 7523 §3 item 3: the audience is the token endpoint (or the issuer).
    let endpoint = format!("{}/oauth/token", cfg.issuer);
    let claims = match token::verify(
        assertion,
        Kind::ClientAssertion,
        &keys,
        &endpoint,
        now,
        rules,
    ) {
        Err(TokenError::WrongAudience) => token::verify(
            assertion,
            Kind::ClientAssertion,
            &keys,
            &cfg.issuer,
            now,
            rules,
        ),
        other => other,
    }
    .map_err(|e| e.to_string())?;
    if claims.sub.as_deref() != Some(sub.as_str()) {
        return Err("assertion iss differs from sub".into());
    }
    let jti = claims.jti.ok_or("assertion without jti")?;
    if jti.is_empty() || jti.len() > 256 {
        return Err("assertion jti length".into());
    }
    replay.insert(
        format!("{sub}\0{jti}"),
        claims.exp.saturating_add(cfg.tokens.leeway_secs),
        now,
    )?;
    Ok(client)
}
