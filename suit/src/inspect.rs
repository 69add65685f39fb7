//! Human- and machine-readable descriptions of an envelope (`publisher inspect`).
//! Describes what the envelope *claims*; nothing here is verified.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};

use crate::consts::{alg, cmd, manifest as mk, param};
use crate::cose::AuthBlock;
use crate::encryption::EncryptionInfo;
use crate::envelope::{Envelope, ReceivedAuthBlock};
use crate::ics::IcsMetadata;
use crate::manifest::{
    Command, CommandSequence, ComponentIndex, Manifest, Param, Severable, component_id_display,
    format_version,
};
use crate::release::component_params;

/// Everything in an envelope, for people and for JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Description {
    /// Hex SHA-256 of the manifest bstr.
    pub release_id: String,
    /// Digest claimed by the authentication wrapper.
    pub claimed_manifest_digest: String,
    /// Whether the claimed digest matches the manifest as received.
    pub manifest_digest_matches: bool,
    /// Authentication blocks.
    pub authentication: Vec<AuthInfo>,
    /// Manifest sequence number.
    pub sequence_number: u64,
    /// set-version, if any.
    pub version: Option<String>,
    /// reference-uri, if any.
    pub reference_uri: Option<String>,
    /// Components with the parameters the sequences set for them.
    pub components: Vec<ComponentInfo>,
    /// Command sequences, in processing order (shared first).
    pub sequences: Vec<SequenceInfo>,
    /// ICS metadata.
    pub ics: Option<IcsInfo>,
    /// Encryption info per component.
    pub encryption: Vec<EncryptionDescription>,
    /// Text, in CBOR diagnostic-like form.
    pub text: Option<String>,
    /// Integrated payloads: key and size.
    pub integrated_payloads: Vec<(String, usize)>,
}

/// One authentication block.
#[derive(Debug, Clone, Serialize)]
pub struct AuthInfo {
    /// COSE structure.
    pub kind: &'static str,
    /// Algorithm name.
    pub alg: String,
    /// kid, as text when printable, else hex.
    pub kid: Option<String>,
}

/// One component.
#[derive(Debug, Clone, Serialize)]
pub struct ComponentInfo {
    /// Index.
    pub index: usize,
    /// Identifier.
    pub id: String,
    /// Parameter name → value.
    pub parameters: BTreeMap<String, String>,
}

/// One command sequence.
#[derive(Debug, Clone, Serialize)]
pub struct SequenceInfo {
    /// Name: shared, payload-fetch, install, validate, ...
    pub name: String,
    /// Severed from the manifest (only its digest is signed inside).
    pub severed: bool,
    /// Commands, when available.
    pub commands: Option<Vec<String>>,
}

/// Signed ICS metadata as text: what a release listing shows (the update server's
/// `ReleaseRecord::ics` is this type, so a listing and `publisher inspect` agree).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IcsSummary {
    /// T1, T2 or T3.
    pub update_type: String,
    /// Categories.
    pub categories: Vec<String>,
    /// CVE ids.
    pub cves: Vec<String>,
    /// Severity.
    pub severity: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// Reboot needed.
    pub reboot: bool,
    /// Release notes.
    pub notes: Option<String>,
}

impl From<&IcsMetadata> for IcsSummary {
    fn from(i: &IcsMetadata) -> Self {
        IcsSummary {
            update_type: i.update_type.to_string(),
            categories: i.categories.iter().map(|c| c.to_string()).collect(),
            cves: i.cves.clone(),
            severity: i.severity.map(|s| s.to_string()),
            author: i.author.clone(),
            reboot: i.reboot,
            notes: i.notes.clone(),
        }
    }
}

/// ICS metadata: the summary, and the kid of a T3 author signature. Serialised flat (the
/// summary's members, then `author_signature_kid`), as before the summary had its own type.
#[derive(Debug, Clone, Serialize)]
pub struct IcsInfo {
    /// The metadata as text.
    #[serde(flatten)]
    pub summary: IcsSummary,
    /// T3 author signature kid, if present.
    pub author_signature_kid: Option<String>,
}

/// Encryption info of one component.
#[derive(Debug, Clone, Serialize)]
pub struct EncryptionDescription {
    /// Component index.
    pub component: usize,
    /// Content algorithm.
    pub content_alg: String,
    /// Recipients: (algorithm, kid).
    pub recipients: Vec<(String, Option<String>)>,
}

/// A COSE algorithm name.
pub fn alg_name(a: i64) -> String {
    match a {
        alg::ES256 => "ES256".into(),
        alg::ESP256 => "ESP256".into(),
        alg::HMAC_256_256 => "HMAC 256/256".into(),
        alg::A128GCM => "A128GCM".into(),
        alg::A192GCM => "A192GCM".into(),
        alg::A256GCM => "A256GCM".into(),
        alg::A128KW => "A128KW".into(),
        alg::A192KW => "A192KW".into(),
        alg::A256KW => "A256KW".into(),
        alg::ECDH_ES_A128KW => "ECDH-ES+A128KW".into(),
        alg::A128CTR => "A128CTR".into(),
        alg::SHA256 => "SHA-256".into(),
        other => format!("alg {other}"),
    }
}

fn printable(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic() || c == ' ') => s.into(),
        _ => format!("h'{}'", hex::encode(b)),
    }
}

/// Name of a parameter label.
pub fn param_name(k: i64) -> String {
    let n = match k {
        param::VENDOR_IDENTIFIER => "vendor-id",
        param::CLASS_IDENTIFIER => "class-id",
        param::IMAGE_DIGEST => "image-digest",
        param::USE_BEFORE => "use-before",
        param::COMPONENT_SLOT => "component-slot",
        param::STRICT_ORDER => "strict-order",
        param::SOFT_FAILURE => "soft-failure",
        param::IMAGE_SIZE => "image-size",
        param::CONTENT => "content",
        param::ENCRYPTION_INFO => "encryption-info",
        param::URI => "uri",
        param::SOURCE_COMPONENT => "source-component",
        param::INVOKE_ARGS => "invoke-args",
        param::DEVICE_IDENTIFIER => "device-id",
        param::FETCH_ARGUMENTS => "fetch-arguments",
        param::MINIMUM_BATTERY => "minimum-battery",
        param::UPDATE_PRIORITY => "update-priority",
        param::VERSION => "version",
        param::WAIT_INFO => "wait-info",
        param::COMPONENT_METADATA => "component-metadata",
        _ => return format!("parameter {k}"),
    };
    n.into()
}

fn command_name(id: i64) -> String {
    let n = match id {
        cmd::VENDOR_IDENTIFIER => "condition-vendor-identifier",
        cmd::CLASS_IDENTIFIER => "condition-class-identifier",
        cmd::IMAGE_MATCH => "condition-image-match",
        cmd::USE_BEFORE => "condition-use-before",
        cmd::COMPONENT_SLOT => "condition-component-slot",
        cmd::CHECK_CONTENT => "condition-check-content",
        cmd::DEPENDENCY_INTEGRITY => "condition-dependency-integrity",
        cmd::IS_DEPENDENCY => "condition-is-dependency",
        cmd::ABORT => "condition-abort",
        cmd::DEVICE_IDENTIFIER => "condition-device-identifier",
        cmd::IMAGE_NOT_MATCH => "condition-image-not-match",
        cmd::MINIMUM_BATTERY => "condition-minimum-battery",
        cmd::UPDATE_AUTHORIZED => "condition-update-authorized",
        cmd::VERSION => "condition-version",
        cmd::PROCESS_DEPENDENCY => "directive-process-dependency",
        cmd::WRITE => "directive-write",
        cmd::FETCH => "directive-fetch",
        cmd::COPY => "directive-copy",
        cmd::INVOKE => "directive-invoke",
        cmd::SWAP => "directive-swap",
        cmd::UNLINK => "directive-unlink",
        cmd::WAIT => "directive-wait",
        cmd::OVERRIDE_MULTIPLE => "directive-override-multiple",
        cmd::COPY_PARAMS => "directive-copy-params",
        _ => return format!("command {id}"),
    };
    n.into()
}

fn param_value(p: &Param) -> String {
    match p {
        Param::Vendor(v) => v.to_string(),
        Param::Uuid(u) => u.to_string(),
        Param::Digest(d) => d.to_string(),
        Param::Uint(n) => n.to_string(),
        Param::Bool(b) => b.to_string(),
        Param::Text(t) => format!("{t:?}"),
        Param::Bytes(b) => format!("{} bytes", b.len()),
        Param::EncryptionInfo(b) => format!("COSE_Encrypt ({} bytes)", b.len()),
        Param::Version(v) => v.describe(),
        Param::Other(v) => format!("{v:?}"),
    }
}

fn describe_sequence(s: &CommandSequence, indent: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(indent);
    for c in &s.0 {
        match c {
            Command::Condition { id, .. } | Command::Directive { id, .. } => {
                out.push(format!("{pad}{}", command_name(*id)))
            }
            Command::SetComponentIndex(ix) => out.push(format!(
                "{pad}directive-set-component-index {}",
                match ix {
                    ComponentIndex::One(n) => n.to_string(),
                    ComponentIndex::All => "all".into(),
                    ComponentIndex::Many(v) => format!("{v:?}"),
                }
            )),
            Command::OverrideParameters(p) | Command::SetParameters(p) => {
                let name = if matches!(c, Command::OverrideParameters(_)) {
                    "directive-override-parameters"
                } else {
                    "directive-set-parameters"
                };
                let body: Vec<String> = p
                    .iter()
                    .map(|(k, v)| format!("{}: {}", param_name(*k), param_value(v)))
                    .collect();
                out.push(format!("{pad}{name} {{{}}}", body.join(", ")));
            }
            Command::TryEach {
                alternatives,
                allow_none,
            } => {
                out.push(format!(
                    "{pad}directive-try-each ({} alternatives{})",
                    alternatives.len(),
                    if *allow_none { ", or none" } else { "" }
                ));
                for (i, a) in alternatives.iter().enumerate() {
                    out.push(format!("{pad}  alternative {i}:"));
                    describe_sequence(a, indent + 2, out);
                }
            }
            Command::RunSequence(s) => {
                out.push(format!("{pad}directive-run-sequence"));
                describe_sequence(s, indent + 1, out);
            }
            Command::Other { id, .. } => out.push(format!("{pad}{} (opaque)", command_name(*id))),
        }
    }
}

fn sequence_name(k: i64) -> String {
    match k {
        mk::VALIDATE => "validate",
        mk::LOAD => "load",
        mk::INVOKE => "invoke",
        mk::DEPENDENCY_RESOLUTION => "dependency-resolution",
        mk::PAYLOAD_FETCH => "payload-fetch",
        mk::CANDIDATE_VERIFICATION => "candidate-verification",
        mk::INSTALL => "install",
        mk::UNINSTALL => "uninstall",
        _ => "sequence",
    }
    .into()
}

/// Describes an envelope.
pub fn describe(env: &Envelope) -> Description {
    let m = &env.manifest;
    Description {
        release_id: env.release_id(),
        claimed_manifest_digest: env.digest.to_string(),
        manifest_digest_matches: env
            .digest
            .matches_sha256(&env.computed_manifest_digest())
            .unwrap_or(false),
        authentication: env.auth_blocks.iter().map(auth_info).collect(),
        sequence_number: m.sequence_number,
        version: m.set_version.as_ref().map(|v| format_version(&v.version)),
        reference_uri: m.reference_uri.clone(),
        components: components(m),
        sequences: sequences(m),
        ics: m.ics.as_ref().map(ics_info),
        encryption: encryption(m),
        text: m
            .text
            .as_ref()
            .and_then(|t| t.value())
            .map(|v| format!("{v:?}")),
        integrated_payloads: env
            .integrated_payloads
            .iter()
            .map(|(k, v)| (k.clone(), v.len()))
            .collect(),
    }
}

fn auth_info(b: &ReceivedAuthBlock) -> AuthInfo {
    AuthInfo {
        kind: match b.block {
            AuthBlock::Sign1 { .. } => "COSE_Sign1",
            AuthBlock::Mac0 { .. } => "COSE_Mac0",
            AuthBlock::Unsupported { tag: 98 } => "COSE_Sign",
            AuthBlock::Unsupported { .. } => "COSE_Mac",
        },
        alg: alg_name(b.block.alg()),
        kid: b.block.kid().map(printable),
    }
}

/// Each component with the parameters the sequences set for it.
fn components(m: &Manifest) -> Vec<ComponentInfo> {
    m.common
        .components
        .iter()
        .enumerate()
        .map(|(i, id)| ComponentInfo {
            index: i,
            id: component_id_display(id),
            parameters: component_params(m, i)
                .iter()
                .map(|(k, v)| (param_name(*k), param_value(v)))
                .collect(),
        })
        .collect()
}

/// The command sequences: shared first, then in processing order.
fn sequences(m: &Manifest) -> Vec<SequenceInfo> {
    let mut sequences = Vec::new();
    if let Some(s) = &m.common.shared_sequence {
        let mut out = Vec::new();
        describe_sequence(s, 0, &mut out);
        sequences.push(SequenceInfo {
            name: "shared".to_owned(),
            severed: false,
            commands: Some(out),
        });
    }
    // Processing order (manifest §6.4, TD §5.5).
    let order = [
        mk::DEPENDENCY_RESOLUTION,
        mk::PAYLOAD_FETCH,
        mk::CANDIDATE_VERIFICATION,
        mk::INSTALL,
        mk::VALIDATE,
        mk::LOAD,
        mk::INVOKE,
        mk::UNINSTALL,
    ];
    for k in order {
        let Some(s) = m.sequences.get(&k) else {
            continue;
        };
        let commands = s.value().map(|s| {
            let mut out = Vec::new();
            describe_sequence(s, 0, &mut out);
            out
        });
        sequences.push(SequenceInfo {
            name: sequence_name(k),
            severed: matches!(s, Severable::Severed { .. }),
            commands,
        });
    }
    sequences
}

fn ics_info(i: &IcsMetadata) -> IcsInfo {
    IcsInfo {
        summary: IcsSummary::from(i),
        author_signature_kid: i
            .author_signature
            .as_deref()
            .and_then(|s| AuthBlock::parse(s).ok())
            .map(|b| b.kid().map(printable).unwrap_or_else(|| "(no kid)".into())),
    }
}

/// The encryption info of each component that has one.
fn encryption(m: &Manifest) -> Vec<EncryptionDescription> {
    (0..m.common.components.len())
        .filter_map(
            |i| match component_params(m, i).get(&param::ENCRYPTION_INFO) {
                Some(Param::EncryptionInfo(b)) => Some((i, EncryptionInfo::decode(b))),
                _ => None,
            },
        )
        .map(|(i, info)| match info {
            Ok(info) => EncryptionDescription {
                component: i,
                content_alg: alg_name(info.content_alg),
                recipients: info
                    .recipients
                    .iter()
                    .map(|r| (alg_name(r.alg), r.kid.as_deref().map(printable)))
                    .collect(),
            },
            Err(e) => EncryptionDescription {
                component: i,
                content_alg: format!("undecodable: {e}"),
                recipients: Vec::new(),
            },
        })
        .collect()
}

impl fmt::Display for Description {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let _ = writeln!(s, "release id        {}", self.release_id);
        let _ = writeln!(
            s,
            "manifest digest   {} ({})",
            self.claimed_manifest_digest,
            if self.manifest_digest_matches {
                "matches the manifest"
            } else {
                "DOES NOT MATCH the manifest"
            }
        );
        if self.authentication.is_empty() {
            let _ = writeln!(s, "authentication    NONE (unauthenticated envelope)");
        }
        for a in &self.authentication {
            let _ = writeln!(
                s,
                "authentication    {} {} kid={}",
                a.kind,
                a.alg,
                a.kid.as_deref().unwrap_or("(none)")
            );
        }
        let _ = writeln!(s, "sequence number   {}", self.sequence_number);
        if let Some(v) = &self.version {
            let _ = writeln!(s, "version           {v}");
        }
        if let Some(u) = &self.reference_uri {
            let _ = writeln!(s, "reference uri     {u}");
        }
        if let Some(info) = &self.ics {
            let i = &info.summary;
            let _ = writeln!(s, "update type       {}", i.update_type);
            if !i.categories.is_empty() {
                let _ = writeln!(s, "categories        {}", i.categories.join(", "));
            }
            if !i.cves.is_empty() {
                let _ = writeln!(s, "CVEs              {}", i.cves.join(", "));
            }
            if let Some(v) = &i.severity {
                let _ = writeln!(s, "severity          {v}");
            }
            if let Some(v) = &i.author {
                let _ = writeln!(s, "author            {v}");
            }
            let _ = writeln!(
                s,
                "reboot needed     {}",
                if i.reboot { "yes" } else { "no" }
            );
            if let Some(v) = &i.notes {
                let _ = writeln!(s, "release notes     {v}");
            }
            if let Some(k) = &info.author_signature_kid {
                let _ = writeln!(s, "author signature  COSE_Sign1 kid={k}");
            }
        }
        for c in &self.components {
            let _ = writeln!(s, "component #{}      {}", c.index, c.id);
            for (k, v) in &c.parameters {
                let _ = writeln!(s, "    {k:<18} {v}");
            }
        }
        for e in &self.encryption {
            let r: Vec<String> = e
                .recipients
                .iter()
                .map(|(a, k)| format!("{a} kid={}", k.as_deref().unwrap_or("(none)")))
                .collect();
            let _ = writeln!(
                s,
                "encryption        component #{}: {}; recipients: {}",
                e.component,
                e.content_alg,
                r.join("; ")
            );
        }
        for seq in &self.sequences {
            let name = &seq.name;
            let state = if seq.severed {
                if seq.commands.is_some() {
                    " (severed, supplied)"
                } else {
                    " (severed, absent)"
                }
            } else {
                ""
            };
            let _ = writeln!(s, "sequence {name}{state}");
            for c in seq.commands.iter().flatten() {
                let _ = writeln!(s, "    {c}");
            }
        }
        if let Some(t) = &self.text {
            let _ = writeln!(s, "text              {t}");
        }
        for (k, n) in &self.integrated_payloads {
            let _ = writeln!(s, "integrated payload {k:?}: {n} bytes");
        }
        f.write_str(&s)
    }
}
