//! The one acceptance path. [`accept`] is the only function that builds an [`Accepted`];
//! everything that stores, approves, decrypts, distributes or installs a release takes one.
//! The publisher's `verify`, the update server, the dispatcher and every device call it,
//! each with its own [`Rules`] (`docs/acceptance.md` lists them per call site, with the
//! refusal codes of [`Error::code`]).
//!
//! Steps (draft-ietf-suit-manifest §6.2 and §8.3, DESIGN.md §3 and §4):
//! 1. decode strictly within [`Limits`];
//! 2. the authentication wrapper holds at least one authentication block (§8.3);
//! 3. the SUIT_Digest is SHA-256 over the received manifest bstr, CBOR head included (§8.3);
//! 4. **every** authentication block verifies (RFC 9052 §4.4, detached payload = the encoded
//!    SUIT_Digest as received) under a key of the trust store that is in force at `now`
//!    (not revoked, within its validity), at most one block per key; a block that does not
//!    is refused, never passed on: the accepted value carries only authenticated bytes.
//!    Nothing after this step looks at bytes that are not authenticated;
//! 5. each publisher signature is authorised: the key's role may sign the manifest's update
//!    type, for every vendor-id it names, and this call site accepts that role;
//! 6. at least one publisher signature (or a configured MAC) verified;
//! 7. the domain's approval signature, as the call site's [`ApprovalRule`] says;
//! 8. under [`Profile::Release`], the project profile (DESIGN.md §3): ICS metadata, vendor-
//!    and class-id as UUIDs under their conditions, plaintext (#0) and ciphertext (#1)
//!    digests and sizes, one encryption info naming the release key, no integrated payload
//!    or delegation chain, and every parameter of every component set to one value only
//!    ([`resolve`]), so that nothing signed can mean two different images;
//! 9. T3 releases: the author's COSE_Sign1 over the plaintext digest of step 8, as the call
//!    site's [`AuthorRule`] says.

use crate::consts::{manifest as mk, param};
use crate::cose::AuthBlock;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::ics::UpdateType;
use crate::limits::Limits;
use crate::manifest::{Manifest, Param, SuitDigest, VendorId};
use crate::profile::{Release, release_facts};
use crate::release::COMPONENT_IMAGE;
use crate::resolve::resolve;
use crate::trust::{KeyStanding, Role, TrustAnchor, TrustStore, UnixTime};

/// Which profile the envelope must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Profile {
    /// The project's release profile (DESIGN.md §3): what publishers, the update server,
    /// the dispatcher and devices accept.
    Release,
    /// Any well-formed, authenticated SUIT envelope: for the published test vectors and for
    /// inspection. An envelope accepted under it has no [`Accepted::release`] facts.
    Generic,
}

/// The domain dispatcher's approval signature (DESIGN.md §2 flow 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalRule {
    /// An approval block is refused (`signer-not-authorized`): approvals are made by the
    /// domain's dispatcher after intake, never received from outside.
    Forbidden,
    /// Kept if it verifies.
    Optional,
    /// At least one approval block must verify (`approval-missing`).
    Required,
}

/// The T3 author signature (DESIGN.md §2 flow 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorRule {
    /// A T3 release must carry an author signature that verifies under a trusted author
    /// key in force (`author-signature-missing`, `author-signature-invalid`).
    Require,
    /// A signature whose kid names a trusted author key must verify; a missing signature or
    /// an author key this call site does not know is recorded in [`AuthorStatus`] for the
    /// caller's policy to decide, never skipped silently.
    VerifyWhenKnown,
}

/// A call site's acceptance rules.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The profile.
    pub profile: Profile,
    /// Publisher roles this call site accepts signatures from.
    pub publisher_roles: Vec<Role>,
    /// Approval.
    pub approval: ApprovalRule,
    /// T3 author.
    pub author: AuthorRule,
    /// Decoding limits.
    pub limits: Limits,
}

impl Rules {
    fn release(approval: ApprovalRule) -> Self {
        Rules {
            profile: Profile::Release,
            publisher_roles: Role::PUBLISHERS.to_vec(),
            approval,
            author: AuthorRule::VerifyWhenKnown,
            limits: Limits::default(),
        }
    }

    /// `publisher verify`: the release profile; an approval is checked when present.
    pub fn publisher_check() -> Self {
        Self::release(ApprovalRule::Optional)
    }

    /// The update server's upload and mirror intake: publisher signatures only.
    pub fn update_server() -> Self {
        Self::release(ApprovalRule::Forbidden)
    }

    /// The dispatcher's intake: publisher signatures only (it signs approvals itself).
    pub fn dispatcher_intake() -> Self {
        Self::release(ApprovalRule::Forbidden)
    }

    /// The dispatcher before every rollout start and push batch: its own approval too.
    pub fn dispatcher_approved() -> Self {
        Self::release(ApprovalRule::Required)
    }

    /// A device: publisher signature and its domain's approval.
    pub fn device() -> Self {
        Self::release(ApprovalRule::Required)
    }

    /// Published test vectors and inspection: any authenticated envelope.
    pub fn generic() -> Self {
        Rules {
            profile: Profile::Generic,
            approval: ApprovalRule::Optional,
            ..Self::release(ApprovalRule::Optional)
        }
    }

    /// Replaces the author rule.
    pub fn with_author(mut self, author: AuthorRule) -> Self {
        self.author = author;
        self
    }

    /// Restricts the publisher roles accepted.
    pub fn with_publisher_roles(mut self, roles: &[Role]) -> Self {
        self.publisher_roles = roles.to_vec();
        self
    }

    /// Replaces the limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
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

impl Signer {
    /// The kid as text (UTF-8 when printable, else hex).
    pub fn kid_text(&self) -> String {
        kid_text(Some(&self.kid))
    }
}

/// What became of a T3 release's author signature.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthorStatus {
    /// Not a T3 release.
    NotApplicable,
    /// Verified under the trusted author key with this kid.
    Verified {
        /// The author key's kid.
        kid: Vec<u8>,
    },
    /// The T3 release carries no author signature (only under [`AuthorRule::VerifyWhenKnown`]).
    Missing,
    /// Signed by an author key this call site does not know (only under
    /// [`AuthorRule::VerifyWhenKnown`]).
    UnknownKey {
        /// The kid in the author signature.
        kid: String,
    },
}

impl AuthorStatus {
    /// A short name for policies and JSON: `n/a`, `verified`, `missing`, `unknown-key`.
    pub fn name(&self) -> &'static str {
        match self {
            AuthorStatus::NotApplicable => "n/a",
            AuthorStatus::Verified { .. } => "verified",
            AuthorStatus::Missing => "missing",
            AuthorStatus::UnknownKey { .. } => "unknown-key",
        }
    }
}

/// A release accepted by [`accept`] under a call site's rules. Private fields, read-only
/// accessors; the only constructor is [`accept`].
#[derive(Debug, Clone)]
pub struct Accepted {
    envelope: Envelope,
    canonical: Vec<u8>,
    signers: Vec<Signer>,
    author: AuthorStatus,
    release: Option<Release>,
    max_auth_blocks: usize,
}

impl Accepted {
    /// The decoded envelope (read-only).
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// The canonical envelope: the received manifest and members with only the
    /// authentication blocks that verified. What callers store and forward.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// The signers whose signatures verified, in order.
    pub fn signers(&self) -> &[Signer] {
        &self.signers
    }

    /// The first publisher signer (a MAC counts, with no role).
    pub fn publisher(&self) -> Option<&Signer> {
        self.signers
            .iter()
            .find(|s| s.role.is_none_or(Role::is_publisher))
    }

    /// Whether the domain's approval signature verified.
    pub fn approved(&self) -> bool {
        self.signers.iter().any(|s| s.role == Some(Role::Approver))
    }

    /// The T3 author signature's outcome.
    pub fn author(&self) -> &AuthorStatus {
        &self.author
    }

    /// Whether a T3 author signature verified.
    pub fn author_verified(&self) -> bool {
        matches!(self.author, AuthorStatus::Verified { .. })
    }

    /// The profile's facts. Always present under [`Profile::Release`]; a
    /// `profile-violation` for envelopes accepted under [`Profile::Generic`].
    pub fn release(&self) -> Result<&Release, Error> {
        self.release.as_ref().ok_or(Error::ProfileViolation(
            "the release profile (accepted as generic)",
        ))
    }

    /// Release identity: hex SHA-256 of the manifest bstr.
    pub fn release_id(&self) -> String {
        self.envelope.release_id()
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        self.envelope.manifest()
    }
}

/// Decodes `bytes` and accepts them as a release under `rules`, with the trust store in
/// force at `now` (Unix seconds). See the module documentation for the steps. Nothing but
/// "unauthenticated" is learnt about an envelope before its signatures verify: the profile
/// and authorisation checks look only at authenticated bytes.
pub fn accept(
    bytes: &[u8],
    trust: &TrustStore,
    rules: &Rules,
    now: UnixTime,
) -> Result<Accepted, Error> {
    // Step 1.
    let envelope = Envelope::decode(bytes, &rules.limits)?;
    // Step 2: §8.3, "the authentication wrapper MUST contain at least one block".
    if envelope.auth_blocks().is_empty() {
        return Err(Error::Unauthenticated);
    }
    // Step 3: §8.3, digest over the manifest bstr as received.
    if !envelope
        .digest()
        .matches_sha256(&envelope.computed_manifest_digest())?
    {
        return Err(Error::ManifestDigestMismatch);
    }
    // Step 4.
    let signers = authenticate(&envelope, trust, now)?;
    let manifest = envelope.manifest();
    // Step 8 before step 5: authorisation needs the vendor-ids, and under the release
    // profile they come from the one resolver.
    let (release, vendors) = match rules.profile {
        Profile::Release => {
            let resolved = resolve(manifest, &rules.limits)?;
            let release = release_facts(&envelope, &resolved)?;
            (Some(release), resolved.vendors())
        }
        Profile::Generic => (None, generic_vendors(manifest)),
    };
    let update_type = manifest.ics.as_ref().map(|m| m.update_type);
    // Steps 5 to 7.
    let signers = authorize(signers, rules, &vendors, update_type)?;
    let release = release.map(|mut r| {
        r.publisher = signers
            .iter()
            .find(|s| s.role.is_none_or(Role::is_publisher))
            .cloned()
            .unwrap_or(r.publisher);
        r
    });
    // Step 9.
    let author = match update_type {
        Some(UpdateType::T3) => check_author(
            &envelope,
            resolved_image_digest(&release, manifest),
            trust,
            rules,
            now,
        )?,
        _ => AuthorStatus::NotApplicable,
    };
    let blocks: Vec<&[u8]> = envelope
        .auth_blocks()
        .iter()
        .map(|b| &b.bytes[..])
        .collect();
    let canonical = envelope.encode_with_blocks(&blocks);
    Ok(Accepted {
        envelope,
        canonical,
        signers,
        author,
        release,
        max_auth_blocks: rules.limits.max_auth_blocks,
    })
}

/// Signs an approval: the canonical envelope with the approver's COSE_Sign1 appended to
/// the authentication wrapper. Takes an [`Accepted`] so that nothing unaccepted is approved;
/// refuses when the result would exceed the authentication-block limit of the rules it was
/// accepted under (devices apply the default limits).
pub fn approve(accepted: &Accepted, approver: &crate::cose::SigningKey) -> Result<Vec<u8>, Error> {
    let env = &accepted.envelope;
    if env.auth_blocks().len() + 1 > accepted.max_auth_blocks {
        return Err(crate::error::DecodeError::LimitExceeded {
            what: "authentication blocks",
            limit: accepted.max_auth_blocks,
        }
        .into());
    }
    if accepted
        .signers
        .iter()
        .any(|s| s.role == Some(Role::Approver) && s.kid == approver.kid())
    {
        return Err(Error::DuplicateSignature {
            kid: kid_text(Some(approver.kid())),
        });
    }
    let block = approver.sign1_detached(env.signed_payload());
    Ok(env.encode_with_extra_block(&block))
}

/// A block that verified, with the anchor it verified under (`None`: a MAC).
struct Authenticated<'t> {
    signer: Signer,
    anchor: Option<&'t TrustAnchor>,
}

/// Step 4: every block verifies under a key in force, one block per key.
fn authenticate<'t>(
    envelope: &Envelope,
    trust: &'t TrustStore,
    now: UnixTime,
) -> Result<Vec<Authenticated<'t>>, Error> {
    let payload = envelope.signed_payload();
    let mut out: Vec<Authenticated<'t>> = Vec::new();
    let mut seen_keys: Vec<[u8; 32]> = Vec::new();
    let mut seen_macs: Vec<usize> = Vec::new();
    for received in envelope.auth_blocks() {
        let block = &received.block;
        match block {
            AuthBlock::Sign1 { .. } => {
                let anchor = verify_sign1(block, payload, trust, now)?;
                // One block per key: copies pad the wrapper and prove nothing more.
                let print = anchor.key().thumbprint();
                if seen_keys.contains(&print) {
                    return Err(Error::DuplicateSignature {
                        kid: kid_text(Some(anchor.kid())),
                    });
                }
                seen_keys.push(print);
                out.push(Authenticated {
                    signer: Signer {
                        kid: anchor.kid().to_vec(),
                        role: Some(anchor.role()),
                    },
                    anchor: Some(anchor),
                });
            }
            AuthBlock::Mac0 { .. } => {
                let mut matched = None;
                for (i, k) in trust.mac_keys().iter().enumerate() {
                    if block.verify_mac(payload, k)? {
                        matched = Some(i);
                        break;
                    }
                }
                let Some(i) = matched else {
                    return Err(if trust.mac_keys().is_empty() {
                        Error::NoTrustedSignature {
                            kids: format!("MAC {}", kid_text(block.kid())),
                        }
                    } else {
                        Error::MacInvalid
                    });
                };
                if seen_macs.contains(&i) {
                    return Err(Error::DuplicateSignature {
                        kid: format!("MAC {}", kid_text(block.kid())),
                    });
                }
                seen_macs.push(i);
                out.push(Authenticated {
                    signer: Signer {
                        kid: block.kid().unwrap_or_default().to_vec(),
                        role: None,
                    },
                    anchor: None,
                });
            }
            AuthBlock::Unsupported { tag } => {
                return Err(Error::NoTrustedSignature {
                    kids: format!("COSE tag {tag} (not supported)"),
                });
            }
        }
    }
    Ok(out)
}

/// Steps 5 to 7: what each authenticated signer may do here.
fn authorize(
    blocks: Vec<Authenticated<'_>>,
    rules: &Rules,
    vendors: &[VendorId],
    update_type: Option<UpdateType>,
) -> Result<Vec<Signer>, Error> {
    let mut publisher_ok = false;
    let mut approved = false;
    let mut signers = Vec::with_capacity(blocks.len());
    for b in blocks {
        let Some(anchor) = b.anchor else {
            // A verified MAC: symmetric trust configured for this check.
            publisher_ok = true;
            signers.push(b.signer);
            continue;
        };
        let kid = kid_text(Some(anchor.kid()));
        let role = anchor.role();
        // Step 5.
        if role.is_publisher() {
            if !rules.publisher_roles.contains(&role) {
                return Err(Error::SignerNotAuthorized {
                    kid,
                    reason: format!("{role} signatures are not accepted here"),
                });
            }
            anchor
                .may_sign(vendors, update_type)
                .map_err(|reason| Error::SignerNotAuthorized { kid, reason })?;
            publisher_ok = true;
        } else if role == Role::Approver {
            if rules.approval == ApprovalRule::Forbidden {
                return Err(Error::SignerNotAuthorized {
                    kid,
                    reason: "approval signatures are made by the domain's dispatcher after \
                             intake, not accepted here"
                        .into(),
                });
            }
            approved = true;
        } else {
            return Err(Error::SignerNotAuthorized {
                kid,
                reason: format!("a {role} key does not sign envelopes"),
            });
        }
        signers.push(b.signer);
    }
    // Step 6.
    if !publisher_ok {
        return Err(Error::NoTrustedSignature {
            kids: "no publisher signature".into(),
        });
    }
    // Step 7.
    if rules.approval == ApprovalRule::Required && !approved {
        return Err(Error::ApprovalMissing);
    }
    Ok(signers)
}

/// Step 4 for one COSE_Sign1: the anchor it verifies under, which must be in force.
fn verify_sign1<'t>(
    block: &AuthBlock,
    payload: &[u8],
    trust: &'t TrustStore,
    now: UnixTime,
) -> Result<&'t TrustAnchor, Error> {
    let kid = block.kid();
    let candidates: Vec<&TrustAnchor> = trust
        .anchors()
        .iter()
        .filter(|a| a.candidate_for(kid))
        .collect();
    if candidates.is_empty() {
        return Err(Error::NoTrustedSignature {
            kids: kid_text(kid),
        });
    }
    // A key that is not in force is refused before its signature is looked at: a revoked
    // key's signatures are worth nothing, valid or not.
    let in_force: Vec<&TrustAnchor> = candidates
        .iter()
        .copied()
        .filter(|a| a.standing(now) == KeyStanding::InForce)
        .collect();
    if in_force.is_empty() {
        let named = candidates.iter().find(|a| !a.any_kid()).copied();
        if let Some(a) = named {
            let kid = kid_text(Some(a.kid()));
            return Err(match a.standing(now) {
                KeyStanding::Revoked => Error::SignerRevoked { kid },
                KeyStanding::NotYetValid => Error::SignerNotYetValid { kid },
                _ => Error::SignerExpired { kid },
            });
        }
        return Err(Error::NoTrustedSignature {
            kids: kid_text(kid),
        });
    }
    for a in &in_force {
        if block.verify_signature(payload, a.key())? {
            return Ok(a);
        }
    }
    // A signature claiming a trusted kid that does not verify is tampering.
    if in_force.iter().any(|a| !a.any_kid()) {
        Err(Error::SignatureInvalid { kid: kid_text(kid) })
    } else {
        Err(Error::NoTrustedSignature {
            kids: kid_text(kid),
        })
    }
}

/// Step 9.
fn check_author(
    envelope: &Envelope,
    image_digest: Option<SuitDigest>,
    trust: &TrustStore,
    rules: &Rules,
    now: UnixTime,
) -> Result<AuthorStatus, Error> {
    let Some(sig) = envelope
        .manifest()
        .ics
        .as_ref()
        .and_then(|m| m.author_signature.as_deref())
    else {
        return match rules.author {
            AuthorRule::Require => Err(Error::AuthorSignatureMissing),
            AuthorRule::VerifyWhenKnown => Ok(AuthorStatus::Missing),
        };
    };
    // The digest the author vouches for is the plaintext digest the one resolver found,
    // the same value the payload check and the device use.
    let digest = image_digest.ok_or(Error::ProfileViolation(
        "plaintext image digest (component 0) for the author signature",
    ))?;
    let block = AuthBlock::parse(sig).map_err(|_| Error::AuthorSignatureInvalid)?;
    let signed = digest.encode();
    let authors: Vec<&TrustAnchor> = trust
        .anchors()
        .iter()
        .filter(|a| a.role() == Role::Author && a.candidate_for(block.kid()))
        .collect();
    if authors.is_empty() {
        return match rules.author {
            AuthorRule::Require => Err(Error::AuthorSignatureInvalid),
            AuthorRule::VerifyWhenKnown => Ok(AuthorStatus::UnknownKey {
                kid: kid_text(block.kid()),
            }),
        };
    }
    for a in &authors {
        if a.standing(now) != KeyStanding::InForce {
            continue;
        }
        if block.verify_signature(&signed, a.key())? {
            return Ok(AuthorStatus::Verified {
                kid: a.kid().to_vec(),
            });
        }
    }
    Err(Error::AuthorSignatureInvalid)
}

fn resolved_image_digest(release: &Option<Release>, manifest: &Manifest) -> Option<SuitDigest> {
    match release {
        Some(r) => Some(r.image.digest.clone()),
        // Generic envelopes: the parameters every sequence sets for component 0.
        None => match manifest
            .parameters(COMPONENT_IMAGE, &[mk::PAYLOAD_FETCH, mk::INSTALL])
            .remove(&param::IMAGE_DIGEST)
        {
            Some(Param::Digest(d)) => Some(d),
            _ => None,
        },
    }
}

fn generic_vendors(manifest: &Manifest) -> Vec<VendorId> {
    let mut out = Vec::new();
    for i in 0..manifest.common.components.len() {
        if let Some(Param::Vendor(v)) = manifest
            .parameters(i, &[mk::PAYLOAD_FETCH, mk::INSTALL])
            .remove(&param::VENDOR_IDENTIFIER)
            && !out.contains(&v)
        {
            out.push(v);
        }
    }
    out
}

pub(crate) fn kid_text(kid: Option<&[u8]>) -> String {
    match kid {
        None => "(no kid)".into(),
        Some(k) => match std::str::from_utf8(k) {
            Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
            _ => hex::encode(k),
        },
    }
}
