//! The one verification path. [`verify`] is the only function that builds a [`Verified`];
//! everything that decrypts, installs or approves takes a `Verified`.
//!
//! Steps (draft-ietf-suit-manifest §6.2 and §8.3, DESIGN.md §4):
//! 1. decode strictly within [`Limits`];
//! 2. the authentication wrapper holds at least one authentication block (§8.3: an
//!    unauthenticated manifest is rejected);
//! 3. the SUIT_Digest is SHA-256 and equals SHA-256 over the received manifest bstr,
//!    CBOR head included (§8.3);
//! 4. each COSE_Sign1 / COSE_Mac0 is checked over the received encoded SUIT_Digest
//!    (RFC 9052 §4.4 detached payload); a block whose kid names a trusted key must verify;
//! 5. at least one publisher signature (or a configured MAC) verifies, by a key that may
//!    sign for the manifest's vendor-id and ICS update type (third parties and internal
//!    publishers sign T1 only; T2/T3 need the manufacturer);
//! 6. if required, the domain dispatcher's approval signature verifies;
//! 7. for T3 releases, the author's COSE_Sign1 over the plaintext image digest verifies
//!    against a trusted author key, when author keys are configured or required.

use uuid::Uuid;
use zeroize::Zeroizing;

use crate::consts::param;
use crate::cose::{AuthBlock, PublicKey};
use crate::envelope::Envelope;
use crate::error::Error;
use crate::ics::UpdateType;
use crate::limits::Limits;
use crate::manifest::{Param, SuitDigest, VendorId};

/// What a trusted key may do (DESIGN.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Device manufacturer: may sign T1, T2 and T3 for its vendor-ids.
    Manufacturer,
    /// Third-party author or publisher: may sign T1 only.
    ThirdParty,
    /// The plant's own engineers (A1): T1 only.
    Internal,
    /// The domain dispatcher's approval key.
    Approver,
    /// A T3 library/firmware author, whose signature covers the plaintext image digest.
    Author,
}

impl Role {
    /// The name used in configuration files and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Role::Manufacturer => "manufacturer",
            Role::ThirdParty => "third-party",
            Role::Internal => "internal",
            Role::Approver => "approver",
            Role::Author => "author",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Role::Manufacturer,
            Role::ThirdParty,
            Role::Internal,
            Role::Approver,
            Role::Author,
        ]
        .into_iter()
        .find(|r| r.name().eq_ignore_ascii_case(s))
    }

    fn is_publisher(self) -> bool {
        matches!(self, Role::Manufacturer | Role::ThirdParty | Role::Internal)
    }
}

/// A trusted public key with its role and scope.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// The key; its kid is matched against the kid of each signature.
    pub key: PublicKey,
    /// Role.
    pub role: Role,
    /// Vendor-ids this key may sign for; empty means any.
    pub vendors: Vec<Uuid>,
    /// Whether a signature without a kid (or with another kid) may be tried against this
    /// key. Only for keys given explicitly by a person (e.g. `publisher verify --trust`).
    pub any_kid: bool,
}

impl TrustAnchor {
    /// A key for `role`, any vendor, matched by kid.
    pub fn new(key: PublicKey, role: Role) -> Self {
        Self {
            key,
            role,
            vendors: Vec::new(),
            any_kid: false,
        }
    }

    /// Restricts to vendor-ids.
    pub fn for_vendors(mut self, vendors: impl IntoIterator<Item = Uuid>) -> Self {
        self.vendors = vendors.into_iter().collect();
        self
    }

    /// Accepts signatures without a matching kid.
    pub fn matching_any_kid(mut self) -> Self {
        self.any_kid = true;
        self
    }

    fn candidate_for(&self, kid: Option<&[u8]>) -> bool {
        self.any_kid || kid == Some(self.key.kid())
    }

    fn may_sign(
        &self,
        vendors: &[VendorId],
        update_type: Option<UpdateType>,
    ) -> Result<(), String> {
        if !self.vendors.is_empty() {
            if vendors.is_empty() {
                return Err("the manifest names no vendor-id".into());
            }
            for v in vendors {
                let ok = matches!(v, VendorId::Uuid(u) if self.vendors.contains(u));
                if !ok {
                    return Err(format!("key may not sign for vendor {v}"));
                }
            }
        }
        match (self.role, update_type) {
            (Role::Manufacturer, _) => Ok(()),
            (Role::ThirdParty | Role::Internal, Some(UpdateType::T1)) => Ok(()),
            (Role::ThirdParty | Role::Internal, Some(t)) => Err(format!(
                "a {} key may sign T1 releases only, this is {t}",
                self.role.name()
            )),
            (Role::ThirdParty | Role::Internal, None) => Err(format!(
                "a {} key may sign T1 releases only, and the manifest declares no update type",
                self.role.name()
            )),
            (role, _) => Err(format!("a {} key cannot publish", role.name())),
        }
    }
}

/// The verifier's trust configuration.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    anchors: Vec<TrustAnchor>,
    mac_keys: Vec<Zeroizing<Vec<u8>>>,
    /// Require a valid approval signature (devices: true; dispatcher intake: false).
    pub require_approval: bool,
    /// Require a valid author signature on T3 releases even if no author key is configured
    /// (then every T3 release fails).
    pub require_author: bool,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a trusted key.
    pub fn add(&mut self, anchor: TrustAnchor) -> &mut Self {
        self.anchors.push(anchor);
        self
    }

    /// Adds an HMAC 256/256 key for COSE_Mac0 authentication blocks (symmetric trust,
    /// as in the firmware-encryption examples).
    pub fn add_mac_key(&mut self, key: &[u8]) -> &mut Self {
        self.mac_keys.push(Zeroizing::new(key.to_vec()));
        self
    }

    /// The anchors.
    pub fn anchors(&self) -> &[TrustAnchor] {
        &self.anchors
    }
}

/// A signer whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The kid of the key that verified.
    pub kid: Vec<u8>,
    /// Its role, or `None` for a MAC.
    pub role: Option<Role>,
}

/// An envelope whose authenticity has been established by [`verify`]. Its fields can only
/// be read; the only constructor is [`verify`].
#[derive(Debug, Clone)]
pub struct Verified {
    envelope: Envelope,
    signers: Vec<Signer>,
    author_verified: bool,
}

impl Verified {
    /// The verified envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The signers whose signatures verified, in order.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// Whether a T3 author signature was verified.
    pub fn author_verified(&self) -> bool {
        self.author_verified
    }

    /// Whether the domain's approval signature verified.
    pub fn approved(&self) -> bool {
        self.signers.iter().any(|s| s.role == Some(Role::Approver))
    }

    /// Release identity: hex SHA-256 of the manifest bstr.
    pub fn release_id(&self) -> String {
        self.envelope.release_id()
    }
}

/// Decodes and verifies an envelope. See the module documentation for the steps.
pub fn verify(bytes: &[u8], trust: &TrustStore, limits: &Limits) -> Result<Verified, Error> {
    // Step 1.
    let envelope = Envelope::decode(bytes, limits)?;
    verify_envelope(envelope, trust)
}

/// Verifies an already decoded envelope (same checks as [`verify`] minus decoding).
pub fn verify_envelope(envelope: Envelope, trust: &TrustStore) -> Result<Verified, Error> {
    // Step 2: §8.3, "the authentication wrapper MUST contain at least one block".
    if envelope.auth_blocks.is_empty() {
        return Err(Error::Unauthenticated);
    }
    // Step 3: §8.3, digest over the manifest bstr as received.
    if !envelope
        .digest
        .matches_sha256(&envelope.computed_manifest_digest())?
    {
        return Err(Error::ManifestDigestMismatch);
    }
    let payload = envelope.signed_payload().to_vec();
    let vendors = manifest_vendors(&envelope);
    let update_type = envelope.manifest.ics.as_ref().map(|m| m.update_type);

    // Step 4.
    let mut signers = Vec::new();
    let mut unknown_kids = Vec::new();
    let mut unauthorised = None;
    let mut publisher_ok = false;
    for received in &envelope.auth_blocks {
        let block = &received.block;
        match block {
            AuthBlock::Sign1 { .. } => {
                let kid = block.kid();
                let candidates: Vec<&TrustAnchor> = trust
                    .anchors
                    .iter()
                    .filter(|a| a.role != Role::Author && a.candidate_for(kid))
                    .collect();
                if candidates.is_empty() {
                    unknown_kids.push(kid_text(kid));
                    continue;
                }
                let mut verified_by = None;
                for a in &candidates {
                    if block.verify_signature(&payload, &a.key)? {
                        verified_by = Some(*a);
                        break;
                    }
                }
                let Some(anchor) = verified_by else {
                    // A signature claiming a trusted kid that does not verify is tampering.
                    if candidates.iter().any(|a| !a.any_kid) {
                        return Err(Error::SignatureInvalid { kid: kid_text(kid) });
                    }
                    unknown_kids.push(kid_text(kid));
                    continue;
                };
                // Step 5 (authorisation) for publisher keys.
                if anchor.role.is_publisher() {
                    match anchor.may_sign(&vendors, update_type) {
                        Ok(()) => publisher_ok = true,
                        Err(reason) => {
                            unauthorised.get_or_insert(Error::SignerNotAuthorized {
                                kid: kid_text(Some(anchor.key.kid())),
                                reason,
                            });
                            continue;
                        }
                    }
                }
                signers.push(Signer {
                    kid: anchor.key.kid().to_vec(),
                    role: Some(anchor.role),
                });
            }
            AuthBlock::Mac0 { .. } => {
                if trust.mac_keys.is_empty() {
                    unknown_kids.push(format!("MAC {}", kid_text(block.kid())));
                    continue;
                }
                let mut ok = false;
                for k in &trust.mac_keys {
                    if block.verify_mac(&payload, k)? {
                        ok = true;
                        break;
                    }
                }
                if !ok {
                    return Err(Error::MacInvalid);
                }
                publisher_ok = true;
                signers.push(Signer {
                    kid: block.kid().unwrap_or_default().to_vec(),
                    role: None,
                });
            }
            AuthBlock::Unsupported { tag } => {
                unknown_kids.push(format!("COSE tag {tag} (unsupported)"));
            }
        }
    }
    if !publisher_ok {
        return Err(unauthorised.unwrap_or_else(|| Error::NoTrustedSignature {
            kids: if unknown_kids.is_empty() {
                "none".into()
            } else {
                unknown_kids.join(", ")
            },
        }));
    }
    // Step 6.
    if trust.require_approval && !signers.iter().any(|s| s.role == Some(Role::Approver)) {
        return Err(Error::ApprovalMissing);
    }
    // Step 7.
    let mut author_verified = false;
    if update_type == Some(UpdateType::T3) {
        let authors: Vec<&TrustAnchor> = trust
            .anchors
            .iter()
            .filter(|a| a.role == Role::Author)
            .collect();
        if !authors.is_empty() || trust.require_author {
            author_verified = verify_author(&envelope, &authors)?;
        }
    }
    Ok(Verified {
        envelope,
        signers,
        author_verified,
    })
}

/// Checks the T3 author's COSE_Sign1 over the plaintext image digest (component 0).
fn verify_author(envelope: &Envelope, authors: &[&TrustAnchor]) -> Result<bool, Error> {
    let sig = envelope
        .manifest
        .ics
        .as_ref()
        .and_then(|m| m.author_signature.as_deref())
        .ok_or(Error::AuthorSignatureMissing)?;
    let digest = plaintext_digest(envelope).ok_or(Error::ProfileViolation(
        "plaintext image digest (component 0) for the author signature",
    ))?;
    let block = AuthBlock::parse(sig).map_err(|_| Error::AuthorSignatureInvalid)?;
    let payload = digest.encode();
    for a in authors {
        if a.candidate_for(block.kid()) && block.verify_signature(&payload, &a.key)? {
            return Ok(true);
        }
    }
    Err(Error::AuthorSignatureInvalid)
}

/// The image digest the shared sequence sets for component 0 (the installed image).
pub(crate) fn plaintext_digest(envelope: &Envelope) -> Option<SuitDigest> {
    match envelope
        .manifest
        .shared_parameters(0)
        .remove(&param::IMAGE_DIGEST)
    {
        Some(Param::Digest(d)) => Some(d),
        _ => None,
    }
}

fn manifest_vendors(envelope: &Envelope) -> Vec<VendorId> {
    let mut out = Vec::new();
    for i in 0..envelope.manifest.common.components.len() {
        if let Some(Param::Vendor(v)) = envelope
            .manifest
            .shared_parameters(i)
            .remove(&param::VENDOR_IDENTIFIER)
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

fn kid_text(kid: Option<&[u8]>) -> String {
    match kid {
        None => "(no kid)".into(),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
            _ => hex::encode(k),
        },
    }
}

/// Signs an approval: returns the envelope with the approver's COSE_Sign1 appended to the
/// authentication wrapper. Takes a `Verified` so that nothing unverified is approved.
pub fn approve(verified: &Verified, approver: &crate::cose::SigningKey) -> Vec<u8> {
    let block = approver.sign1_detached(verified.envelope.signed_payload());
    verified.envelope.encode_with_extra_block(&block)
}
