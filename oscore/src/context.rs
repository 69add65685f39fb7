//! Security context derivation (RFC 8613 §3.2) and the per-message cryptographic helpers
//! (nonce §5.2, AAD §5.4). Algorithms are the mandatory defaults: AES-CCM-16-64-128 (COSE 10)
//! and HKDF-SHA-256.

use std::fmt;

use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U13};
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::cbor;
use crate::error::{Error, Result};
use crate::replay::ReplayWindow;
use crate::seq::{SenderSequence, SeqStore};

/// AES-CCM-16-64-128: 16-byte key, 8-byte tag, 13-byte nonce.
pub(crate) type Aes128Ccm = ccm::Ccm<aes::Aes128, U8, U13>;
/// COSE algorithm identifier of AES-CCM-16-64-128 (RFC 9053 §4.2).
pub const ALG_AES_CCM_16_64_128: i64 = 10;
/// Key length of the AEAD.
pub const KEY_LEN: usize = 16;
/// Nonce length of the AEAD.
pub const NONCE_LEN: usize = 13;
/// Tag length of the AEAD.
pub const TAG_LEN: usize = 8;
/// RFC 8613 §3.3: the maximum Sender/Recipient ID length is nonce length - 6.
pub const MAX_ID_LEN: usize = NONCE_LEN - 6;

/// Input parameters of a security context (RFC 8613 §3.1). The master secret is zeroised on
/// drop and never printed.
#[derive(Clone)]
pub struct ContextParams {
    /// Master Secret (secret).
    pub master_secret: Zeroizing<Vec<u8>>,
    /// Master Salt (empty when absent).
    pub master_salt: Vec<u8>,
    /// ID Context, if any.
    pub id_context: Option<Vec<u8>>,
    /// Own Sender ID.
    pub sender_id: Vec<u8>,
    /// Peer's Sender ID (our Recipient ID).
    pub recipient_id: Vec<u8>,
}

impl fmt::Debug for ContextParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContextParams")
            .field("master_secret", &"<redacted>")
            .field("master_salt", &hex::encode(&self.master_salt))
            .field("id_context", &self.id_context.as_ref().map(hex::encode))
            .field("sender_id", &hex::encode(&self.sender_id))
            .field("recipient_id", &hex::encode(&self.recipient_id))
            .finish()
    }
}

/// RFC 8613 §3.2.1: `info = [ id, id_context, alg_aead, type, L ]`.
pub fn derivation_info(id: &[u8], id_context: Option<&[u8]>, kind: &str, len: usize) -> Vec<u8> {
    let mut info = Vec::with_capacity(32);
    cbor::array(&mut info, 5);
    cbor::bstr(&mut info, id);
    match id_context {
        Some(c) => cbor::bstr(&mut info, c),
        None => cbor::nil(&mut info),
    }
    cbor::int(&mut info, ALG_AES_CCM_16_64_128);
    cbor::tstr(&mut info, kind);
    cbor::uint(&mut info, len as u64);
    info
}

fn hkdf_expand(params: &ContextParams, info: &[u8], out: &mut [u8]) {
    // RFC 8613 §3.2.1: salt = Master Salt (empty string when absent), IKM = Master Secret.
    let hk = Hkdf::<Sha256>::new(Some(&params.master_salt), &params.master_secret);
    // Lengths are 13 or 16, far below 255 * 32: expand cannot fail.
    if hk.expand(info, out).is_err() {
        out.fill(0);
    }
}

/// Keys and IV derived from [`ContextParams`] (RFC 8613 §3.2.1).
pub struct DerivedKeys {
    /// Sender Key.
    pub sender_key: Zeroizing<[u8; KEY_LEN]>,
    /// Recipient Key.
    pub recipient_key: Zeroizing<[u8; KEY_LEN]>,
    /// Common IV.
    pub common_iv: [u8; NONCE_LEN],
}

impl fmt::Debug for DerivedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DerivedKeys")
            .field("sender_key", &"<redacted>")
            .field("recipient_key", &"<redacted>")
            .field("common_iv", &hex::encode(self.common_iv))
            .finish()
    }
}

/// Derives Sender Key, Recipient Key and Common IV (RFC 8613 §3.2.1).
pub fn derive_keys(params: &ContextParams) -> Result<DerivedKeys> {
    // RFC 8613 §3.3: IDs are at most nonce length - 6 bytes long.
    for id in [&params.sender_id, &params.recipient_id] {
        if id.len() > MAX_ID_LEN {
            return Err(Error::IdTooLong {
                len: id.len(),
                max: MAX_ID_LEN,
            });
        }
    }
    // RFC 8613 §3.3: Sender ID and Recipient ID of one context differ.
    if params.sender_id == params.recipient_id {
        return Err(Error::SenderEqualsRecipient);
    }
    let ctx = params.id_context.as_deref();
    let mut sender_key = Zeroizing::new([0u8; KEY_LEN]);
    let mut recipient_key = Zeroizing::new([0u8; KEY_LEN]);
    let mut common_iv = [0u8; NONCE_LEN];
    hkdf_expand(
        params,
        &derivation_info(&params.sender_id, ctx, "Key", KEY_LEN),
        &mut *sender_key,
    );
    hkdf_expand(
        params,
        &derivation_info(&params.recipient_id, ctx, "Key", KEY_LEN),
        &mut *recipient_key,
    );
    hkdf_expand(
        params,
        &derivation_info(&[], ctx, "IV", NONCE_LEN),
        &mut common_iv,
    );
    Ok(DerivedKeys {
        sender_key,
        recipient_key,
        common_iv,
    })
}

/// RFC 8613 §5.2: nonce = (len(ID_PIV) | pad7(ID_PIV) | pad5(PIV)) XOR Common IV.
pub fn nonce(common_iv: &[u8; NONCE_LEN], id_piv: &[u8], piv: &[u8]) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    // Callers guarantee id_piv.len() <= 7 and piv.len() <= 5 (checked at parse/derive time).
    let id_len = id_piv.len().min(MAX_ID_LEN);
    let piv_len = piv.len().min(5);
    n[0] = id_len as u8;
    n[1 + MAX_ID_LEN - id_len..1 + MAX_ID_LEN].copy_from_slice(&id_piv[..id_len]);
    n[NONCE_LEN - piv_len..].copy_from_slice(&piv[..piv_len]);
    for (a, b) in n.iter_mut().zip(common_iv) {
        *a ^= b;
    }
    n
}

/// RFC 8613 §5.4: `aad_array = [1, [alg_aead], request_kid, request_piv, options]`
/// (no Class I options are defined, so `options` is the empty bstr).
pub fn aad_array(request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(16 + request_kid.len() + request_piv.len());
    cbor::array(&mut a, 5);
    cbor::uint(&mut a, 1);
    cbor::array(&mut a, 1);
    cbor::int(&mut a, ALG_AES_CCM_16_64_128);
    cbor::bstr(&mut a, request_kid);
    cbor::bstr(&mut a, request_piv);
    cbor::bstr(&mut a, &[]);
    a
}

/// RFC 8613 §5.4 / RFC 9052 §5.3: `Enc_structure = ["Encrypt0", h'', external_aad]`.
pub fn aad(request_kid: &[u8], request_piv: &[u8]) -> Vec<u8> {
    let arr = aad_array(request_kid, request_piv);
    let mut a = Vec::with_capacity(arr.len() + 16);
    cbor::array(&mut a, 3);
    cbor::tstr(&mut a, "Encrypt0");
    cbor::bstr(&mut a, &[]);
    cbor::bstr(&mut a, &arr);
    a
}

/// RFC 8613 §6.1 / §7.2: Partial IV = sequence number in the fewest bytes, 0 as one zero byte.
pub fn piv_from_seq(seq: u64) -> ([u8; 5], usize) {
    let be = seq.to_be_bytes();
    let mut len = 5;
    while len > 1 && be[8 - len] == 0 {
        len -= 1;
    }
    let mut out = [0u8; 5];
    out[..len].copy_from_slice(&be[8 - len..]);
    (out, len)
}

/// Sequence number from a Partial IV (1..=5 bytes, big-endian).
pub fn seq_from_piv(piv: &[u8]) -> u64 {
    piv.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// One AEAD key, ready to use.
#[derive(Clone)]
pub(crate) struct Aead(Aes128Ccm);

impl Aead {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        let k = ccm::aead::Key::<Aes128Ccm>::from(*key);
        Aead(Aes128Ccm::new(&k))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub(crate) fn seal(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let n = ccm::aead::Nonce::<Aes128Ccm>::from(*nonce);
        self.0
            .encrypt_in_place(&n, aad, buf)
            .map_err(|_| Error::MalformedMessage("plaintext too long"))
    }

    /// Verifies the tag (constant time, inside `ccm`) and decrypts in place.
    pub(crate) fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        // RFC 8613 §8.2 step 6: the ciphertext includes at least the tag.
        if buf.len() < TAG_LEN {
            return Err(Error::DecryptFailed);
        }
        let n = ccm::aead::Nonce::<Aes128Ccm>::from(*nonce);
        self.0
            .decrypt_in_place(&n, aad, buf)
            .map_err(|_| Error::DecryptFailed)
    }
}

/// A complete OSCORE security context (RFC 8613 §3.1): common, sender and recipient parts,
/// the sender sequence number (persisted ahead, Appendix B.1.1) and the replay window.
pub struct SecurityContext {
    pub(crate) id_context: Option<Vec<u8>>,
    pub(crate) sender_id: Vec<u8>,
    pub(crate) recipient_id: Vec<u8>,
    pub(crate) common_iv: [u8; NONCE_LEN],
    pub(crate) sender: Aead,
    pub(crate) recipient: Aead,
    pub(crate) seq: SenderSequence,
    pub(crate) replay: ReplayWindow,
    /// RFC 9175 / RFC 8613 B.1.2: the Echo value we last challenged the peer with.
    pub(crate) echo_challenge: Option<Vec<u8>>,
}

impl fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityContext")
            .field("sender_id", &hex::encode(&self.sender_id))
            .field("recipient_id", &hex::encode(&self.recipient_id))
            .field("id_context", &self.id_context.as_ref().map(hex::encode))
            .field("keys", &"<redacted>")
            .field("seq", &self.seq)
            .field("replay", &self.replay)
            .finish()
    }
}

impl SecurityContext {
    /// Derives a context. `store` persists the sender sequence number (Appendix B.1.1): it is
    /// loaded now, and the context resumes above the persisted value. When the store held a
    /// value (a restart), the replay window is marked lost so that the first request from the
    /// peer goes through the Echo exchange (Appendix B.1.2); a fresh context starts with an
    /// empty window.
    pub fn new(params: &ContextParams, store: Box<dyn SeqStore>) -> Result<Self> {
        let mut keys = derive_keys(params)?;
        let (seq, restarted) = SenderSequence::load(store)?;
        let ctx = SecurityContext {
            id_context: params.id_context.clone(),
            sender_id: params.sender_id.clone(),
            recipient_id: params.recipient_id.clone(),
            common_iv: keys.common_iv,
            sender: Aead::new(&keys.sender_key),
            recipient: Aead::new(&keys.recipient_key),
            seq,
            replay: if restarted {
                ReplayWindow::lost()
            } else {
                ReplayWindow::new()
            },
            echo_challenge: None,
        };
        keys.common_iv.zeroize();
        Ok(ctx)
    }

    /// Own Sender ID (sent as kid in requests).
    pub fn sender_id(&self) -> &[u8] {
        &self.sender_id
    }

    /// Recipient ID (the peer's kid).
    pub fn recipient_id(&self) -> &[u8] {
        &self.recipient_id
    }

    /// ID Context, if any.
    pub fn id_context(&self) -> Option<&[u8]> {
        self.id_context.as_deref()
    }

    /// The next sender sequence number that will be used.
    pub fn next_seq(&self) -> u64 {
        self.seq.peek()
    }

    /// Replay window state (for tests and diagnostics).
    pub fn replay_window(&self) -> &ReplayWindow {
        &self.replay
    }

    /// Forgets the replay window (as after a restart that did not persist it); the next request
    /// from the peer then needs the Echo exchange of RFC 8613 Appendix B.1.2.
    pub fn forget_replay_window(&mut self) {
        self.replay = ReplayWindow::lost();
    }

    /// Persists the current sender sequence position (used on graceful shutdown).
    pub fn flush(&mut self) -> Result<()> {
        self.seq.flush()
    }
}
