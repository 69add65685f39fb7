//! RFC 9124 THREAT.IMG.DISCLOSURE and THREAT.KEY.EXPOSURE at the update server (A2: whoever
//! reads an update server's or mirror's disks, database and logs): the update server is
//! public infrastructure and must never hold what would let it read an image.

use std::path::Path;

use ics_suit::chain::CLASS_HMI;
use suit::UpdateType;

use crate::common::*;

/// Every file below `dir`, whole.
fn files(dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if let Ok(b) = std::fs::read(&p) {
            out.push((p.display().to_string(), b));
        }
    }
}

/// The symmetric key bytes (`k`, label -1) of a COSE_Key.
fn key_bytes(cose_key: &[u8]) -> Vec<u8> {
    let v: ciborium::Value = ciborium::from_reader(cose_key).unwrap();
    v.as_map()
        .unwrap()
        .iter()
        .find(|(l, _)| l.as_integer() == Some((-1).into()))
        .and_then(|(_, k)| k.as_bytes())
        .unwrap()
        .clone()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Attack (RFC 9124 THREAT.IMG.DISCLOSURE, THREAT.KEY.EXPOSURE; A2 reading the update
/// server's storage, database and logs): a genuine release of a random image is published
/// (its key stored at the key repository, envelope and blob uploaded), and everything the
/// update server wrote is searched for the release key and for the plaintext.
///
/// Check: encrypt-then-sign; the publisher uploads envelope and ciphertext only, the
/// release key goes to the key repository alone.
/// Asserts: the release is stored and listed (so the search covers it), and no file of the
/// update server (objects, database, configuration, log) contains the release key's bytes,
/// its COSE_Key, or a 64-byte piece of the plaintext (start, middle, end).
#[test]
fn update_server_holds_neither_the_release_key_nor_the_image() {
    run(async {
        let s = services().await;
        let c = &s.c;
        let mut plain = vec![0u8; 64 * 1024];
        getrandom::fill(&mut plain).unwrap();
        let (id, _) = s
            .stored(
                &c.untrusted,
                CLASS_HMI,
                UpdateType::T1,
                &plain,
                "disclosure-1",
            )
            .await;
        assert!(us_listed(c, 0).await.contains(&id));
        let cose = dispatcher_reader(c)
            .get_key("disclosure-1")
            .await
            .unwrap()
            .cose_key;
        let k = key_bytes(&cose);
        assert_eq!(k.len(), 16);
        let mut all = Vec::new();
        files(&c.opts.root.join("update-server"), &mut all);
        all.push((
            "update-server.log".into(),
            std::fs::read(c.logs.join("update-server.log")).unwrap_or_default(),
        ));
        let mid = plain.len() / 2;
        let pieces = [
            &plain[..64],
            &plain[mid..mid + 64],
            &plain[plain.len() - 64..],
        ];
        for (path, bytes) in &all {
            assert!(!contains(bytes, &k), "{path} holds the release key");
            assert!(!contains(bytes, &cose), "{path} holds the COSE_Key");
            for p in pieces {
                assert!(!contains(bytes, p), "{path} holds plaintext");
            }
        }
    });
}
