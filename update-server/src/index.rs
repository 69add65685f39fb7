//! The release index in sled: release records, a per-product index by sequence number,
//! and the publication order (for the notification stream and mirrors).
//!
//! Trees: `releases` (release id → JSON [`ReleaseRecord`]), `products`
//! (`vendor/class/` + big-endian sequence → release id), `order` (big-endian publication
//! number → release id). One sled transaction writes all three.

use serde::Deserialize;
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::Error;

pub use crate::model::{IcsSummary, PayloadInfo, ReleaseRecord};

/// What [`Index::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// The same release was already there (idempotent retry).
    Existing(Box<ReleaseRecord>),
    /// Another release holds this vendor/class/sequence.
    Conflict(String),
}

/// Filters of `GET /v1/releases`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    #[serde(rename = "vendor-id")]
    pub vendor_id: Option<uuid::Uuid>,
    #[serde(rename = "class-id")]
    pub class_id: Option<uuid::Uuid>,
    #[serde(rename = "min-sequence")]
    pub min_sequence: Option<u64>,
    /// Only releases published after this publication number.
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

impl Filter {
    pub fn matches(&self, r: &ReleaseRecord) -> bool {
        self.vendor_id
            .is_none_or(|v| v.hyphenated().to_string() == r.vendor_id)
            && self
                .class_id
                .is_none_or(|c| c.hyphenated().to_string() == r.class_id)
            && self.min_sequence.is_none_or(|s| r.sequence >= s)
            && self.after.is_none_or(|a| r.order > a)
    }
}

#[derive(Debug, Clone)]
pub struct Index {
    db: sled::Db,
    releases: sled::Tree,
    products: sled::Tree,
    order: sled::Tree,
}

fn product_prefix(vendor: &str, class: &str) -> Vec<u8> {
    format!("{vendor}/{class}/").into_bytes()
}

fn product_key(vendor: &str, class: &str, seq: u64) -> Vec<u8> {
    let mut k = product_prefix(vendor, class);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn decode(bytes: &[u8]) -> Result<ReleaseRecord, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::db(format!("corrupt release record: {e}")))
}

impl Index {
    pub fn open(dir: &std::path::Path) -> Result<Index, Error> {
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(Some(500))
            .open()
            .map_err(|e| match e {
                sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                    Error::usage(format!(
                        "{} is in use by another process (is the server running?)",
                        dir.display()
                    ))
                }
                other => Error::db(format!("{}: {other}", dir.display())),
            })?;
        Ok(Index {
            releases: db.open_tree("releases")?,
            products: db.open_tree("products")?,
            order: db.open_tree("order")?,
            db,
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<ReleaseRecord>, Error> {
        self.releases
            .get(id.as_bytes())?
            .map(|b| decode(&b))
            .transpose()
    }

    /// The release holding vendor/class/sequence, if any.
    pub fn by_sequence(
        &self,
        vendor: &str,
        class: &str,
        seq: u64,
    ) -> Result<Option<String>, Error> {
        Ok(self
            .products
            .get(product_key(vendor, class, seq))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// The highest sequence number published for vendor/class.
    pub fn newest_sequence(&self, vendor: &str, class: &str) -> Result<Option<u64>, Error> {
        let prefix = product_prefix(vendor, class);
        let Some((k, _)) = self.products.scan_prefix(&prefix).next_back().transpose()? else {
            return Ok(None);
        };
        let tail: [u8; 8] = k[prefix.len()..]
            .try_into()
            .map_err(|_| Error::db("corrupt product key"))?;
        Ok(Some(u64::from_be_bytes(tail)))
    }

    /// Inserts a release atomically (record, product slot, publication order), unless the
    /// same release or another release with its vendor/class/sequence is already there.
    pub async fn insert(&self, mut rec: ReleaseRecord) -> Result<(Inserted, ReleaseRecord), Error> {
        rec.order = self.db.generate_id()?.saturating_add(1);
        let pkey = product_key(&rec.vendor_id, &rec.class_id, rec.sequence);
        let value = serde_json::to_vec(&rec).map_err(|e| Error::db(e.to_string()))?;
        let id = rec.release_id.clone();
        let res = (&self.releases, &self.products, &self.order).transaction(|(r, p, o)| {
            if let Some(existing) = r.get(id.as_bytes())? {
                let e = decode(&existing).map_err(ConflictableTransactionError::Abort)?;
                return Ok(Inserted::Existing(Box::new(e)));
            }
            if let Some(other) = p.get(&pkey)? {
                return Ok(Inserted::Conflict(
                    String::from_utf8_lossy(&other).into_owned(),
                ));
            }
            r.insert(id.as_bytes(), value.as_slice())?;
            p.insert(pkey.as_slice(), id.as_bytes())?;
            o.insert(&rec.order.to_be_bytes(), id.as_bytes())?;
            Ok(Inserted::New)
        });
        let outcome = match res {
            Ok(x) => x,
            Err(TransactionError::Abort(e)) => return Err(e),
            Err(TransactionError::Storage(e)) => return Err(e.into()),
        };
        if outcome == Inserted::New {
            self.db.flush_async().await?;
        }
        let rec = match &outcome {
            Inserted::Existing(e) => (**e).clone(),
            _ => rec,
        };
        Ok((outcome, rec))
    }

    /// Releases in publication order that match `filter`, at most `limit`.
    pub fn list(&self, filter: &Filter, limit: usize) -> Result<Vec<ReleaseRecord>, Error> {
        let start = filter.after.map(|a| a.saturating_add(1)).unwrap_or(0);
        let mut out = Vec::new();
        for item in self.order.range(start.to_be_bytes()..) {
            let (_, id) = item?;
            let Some(b) = self.releases.get(&id)? else {
                continue;
            };
            let r = decode(&b)?;
            if filter.matches(&r) {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.releases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.releases.is_empty()
    }

    pub async fn flush(&self) -> Result<(), Error> {
        self.db.flush_async().await?;
        Ok(())
    }
}
