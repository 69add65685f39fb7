//! The provisioning bundle (`fleet_proto::bundle`, where its format is documented) as the
//! device reads it: from a file, through the one strict decoder, with the trust keys then
//! checked as P-256 keys (the decoder checks their PEM syntax only).
//!
//! The device stores `oscore` as `oscore.json` and `uplink` as `uplink.json` (mode 0600, the
//! `oscore` crate's context-file shape, sequence state beside them in `*.seq`).

use std::path::Path;

use zeroize::Zeroizing;

use crate::DeviceError;

pub use fleet_proto::bundle::{Bundle, FORMAT, OscoreParams, SecretHex};

fn read_file(path: &Path, limit: usize) -> Result<Zeroizing<Vec<u8>>, DeviceError> {
    use std::io::Read as _;
    let io = |source| DeviceError::Io {
        what: "cannot read bundle",
        path: path.to_owned(),
        source,
    };
    let mut bytes = Zeroizing::new(Vec::new());
    // One byte past the limit is enough to refuse the file without reading it whole.
    std::fs::File::open(path)
        .map_err(io)?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Corrupt(format!("{}: {e}", path.display()))
}

/// Reads one bundle (`device-sim provision --bundle FILE`) and checks its keys.
pub fn read(path: &Path) -> Result<Bundle, DeviceError> {
    let bytes = read_file(path, fleet_proto::limits::MAX_BUNDLE)?;
    let b = Bundle::decode(&bytes).map_err(|e| corrupt(path, e))?;
    check_keys(&b).map_err(|e| corrupt(path, e))?;
    Ok(b)
}

/// Reads a JSON array of bundles (`device-sim fleet --provision FILE`) and checks their keys.
pub fn read_list(path: &Path) -> Result<Vec<Bundle>, DeviceError> {
    let bytes = read_file(path, fleet_proto::limits::MAX_BUNDLE_LIST)?;
    let list = Bundle::decode_list(&bytes).map_err(|e| corrupt(path, e))?;
    for (i, b) in list.iter().enumerate() {
        check_keys(b).map_err(|e| corrupt(path, format_args!("[{i}]: {e}")))?;
    }
    Ok(list)
}

/// The bundle's trust store loads (every key parses as a public key the device can verify
/// with; the decoder has already checked it, this names the entry at fault).
pub fn check_keys(b: &Bundle) -> Result<(), DeviceError> {
    b.trust
        .trust_store()
        .map(drop)
        .map_err(|e| DeviceError::Corrupt(format!("trust store: {e}")))
}
