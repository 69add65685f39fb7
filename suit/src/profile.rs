//! The release profile (DESIGN.md §3): what an accepted release is guaranteed to carry,
//! read from the parameters of the one resolver ([`crate::resolve`]).

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::accept::Signer;
use crate::consts::{cmd, envelope as ek, param};
use crate::encryption::EncryptionInfo;
use crate::envelope::Envelope;
use crate::error::Error;
use crate::ics::IcsMetadata;
use crate::manifest::{ComponentId, Param, VendorId, VersionMatch};
use crate::release::{COMPONENT_BLOB, COMPONENT_IMAGE, ImageInfo};
use crate::resolve::Resolved;

/// What the release profile guarantees about an accepted release.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Release {
    /// Vendor-id (component #0).
    pub vendor: Uuid,
    /// Class-id (component #0).
    pub class: Uuid,
    /// Device-id, for a release targeted at one device.
    pub device: Option<Uuid>,
    /// Manifest sequence number.
    pub sequence: u64,
    /// The version it installs (set-version), if declared.
    pub version: Option<Vec<i64>>,
    /// Version precondition on the installed image, if any.
    pub requires: Option<VersionMatch>,
    /// The installed (plaintext) image, component #0.
    pub image: ImageInfo,
    /// The encrypted blob as fetched, component #1.
    pub blob: ImageInfo,
    /// The encryption info that decrypts the blob into the image.
    pub encryption: EncryptionInfo,
    /// The kid of the per-release key in the key repository (the COSE recipient's kid).
    pub release_kid: Vec<u8>,
    /// Signed ICS metadata.
    pub ics: IcsMetadata,
    /// The manifest's components.
    pub components: Vec<ComponentId>,
    /// Where the blob may be fetched, if the manifest says.
    pub uri: Option<String>,
    /// The first publisher signer.
    pub publisher: Signer,
}

impl Release {
    /// The release key id as text.
    pub fn release_kid_text(&self) -> String {
        String::from_utf8_lossy(&self.release_kid).into_owned()
    }
}

/// Step 8: the release profile's facts from the resolved parameters.
pub(crate) fn release_facts(envelope: &Envelope, r: &Resolved) -> Result<Release, Error> {
    use Error::ProfileViolation as P;
    let m = envelope.manifest();
    // No unauthenticated bytes beside the manifest: the blob is detached (component #1)
    // and trust delegation is not part of this profile.
    if !envelope.integrated_payloads().is_empty() {
        return Err(P(
            "no integrated payloads (the blob is fetched as component 1)",
        ));
    }
    if envelope.has_member(ek::DELEGATION) {
        return Err(P("no delegation chains"));
    }
    if m.common.components.len() < 2 {
        return Err(P("components #0 (image) and #1 (encrypted blob)"));
    }
    let img = r.component(COMPONENT_IMAGE).ok_or(P("component 0"))?;
    let blob = r.component(COMPONENT_BLOB).ok_or(P("component 1"))?;
    let vendor = match img.get(&param::VENDOR_IDENTIFIER) {
        Some(Param::Vendor(VendorId::Uuid(u))) => *u,
        _ => return Err(P("vendor-id as a UUID on component 0")),
    };
    let class = match img.get(&param::CLASS_IDENTIFIER) {
        Some(Param::Uuid(u)) => *u,
        _ => return Err(P("class-id as a UUID on component 0")),
    };
    let device = match img.get(&param::DEVICE_IDENTIFIER) {
        Some(Param::Uuid(u)) => Some(*u),
        None => None,
        Some(_) => return Err(P("device-id as a UUID")),
    };
    let requires = match img.get(&param::VERSION) {
        Some(Param::Version(v)) => Some(v.clone()),
        None => None,
        Some(_) => return Err(P("a version comparison in the version parameter")),
    };
    // §8.4.9.1: the identifiers are only worth something if the shared sequence checks them
    // on the component they describe, before any other sequence runs.
    let conds = &r.shared_conditions[COMPONENT_IMAGE];
    let mut need = vec![
        (
            cmd::VENDOR_IDENTIFIER,
            "condition-vendor-identifier on component 0",
        ),
        (
            cmd::CLASS_IDENTIFIER,
            "condition-class-identifier on component 0",
        ),
    ];
    if device.is_some() {
        need.push((
            cmd::DEVICE_IDENTIFIER,
            "condition-device-identifier on component 0",
        ));
    }
    if requires.is_some() {
        need.push((cmd::VERSION, "condition-version on component 0"));
    }
    for (c, what) in need {
        if !conds.contains(&c) {
            return Err(P(what));
        }
    }
    let image = image_info(img).ok_or(P("plaintext digest and size (component 0)"))?;
    let blob_info = image_info(blob).ok_or(P("ciphertext digest and size (component 1)"))?;
    for info in [&image, &blob_info] {
        if info.digest.alg != crate::consts::alg::SHA256 || info.digest.bytes.len() != 32 {
            return Err(P("SHA-256 image digests"));
        }
    }
    let enc = match (
        img.get(&param::ENCRYPTION_INFO),
        blob.get(&param::ENCRYPTION_INFO),
    ) {
        (Some(Param::EncryptionInfo(b)), None) => EncryptionInfo::decode(b)?,
        _ => return Err(P("one encryption info (parameter 19) on component 0")),
    };
    let release_kid = match enc.recipients.as_slice() {
        [only] => only
            .kid
            .clone()
            .ok_or(P("a kid on the encryption recipient"))?,
        _ => return Err(P("exactly one encryption recipient")),
    };
    let ics = m
        .ics
        .clone()
        .ok_or(P("ICS metadata (manifest key -1000)"))?;
    let uri = match blob.get(&param::URI) {
        Some(Param::Text(u)) => Some(u.clone()),
        _ => None,
    };
    // Filled in once the signers are authorised.
    let publisher = Signer {
        kid: Vec::new(),
        role: None,
    };
    Ok(Release {
        vendor,
        class,
        device,
        sequence: m.sequence_number,
        version: m.set_version.as_ref().map(|v| v.version.clone()),
        requires,
        image,
        blob: blob_info,
        encryption: enc,
        release_kid,
        ics,
        components: m.common.components.clone(),
        uri,
        publisher,
    })
}

fn image_info(p: &BTreeMap<i64, Param>) -> Option<ImageInfo> {
    match (p.get(&param::IMAGE_DIGEST), p.get(&param::IMAGE_SIZE)) {
        (Some(Param::Digest(d)), Some(Param::Uint(s))) => Some(ImageInfo {
            digest: d.clone(),
            size: *s,
        }),
        _ => None,
    }
}
