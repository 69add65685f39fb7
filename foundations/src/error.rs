//! The one error type of the foundations. Services wrap it in their own error enums (one
//! `From` impl each); its messages name the file or the operation, never a secret.

/// What went wrong in a foundation (a file, the random number generator, TLS set-up, the
/// audit database).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot read or write {path}: {source}")]
    Io {
        /// Which file (or operation).
        path: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content is not what it must be.
    #[error("invalid configuration in {path}: {reason}")]
    Config {
        /// Which file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// Certificates or keys for TLS could not be loaded or made.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The database (the audit chain's tree) failed.
    #[error("database error: {0}")]
    Db(String),
    /// A signing key could not be used.
    #[error("cryptographic operation failed: {0}")]
    Crypto(String),
    /// Stored data does not decode or authenticate.
    #[error("stored data is corrupt or was not written by this key: {0}")]
    Corrupt(String),
    /// The command line (or what it names) is not usable; the message says what to do.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().display().to_string(),
            source,
        }
    }
}

#[cfg(feature = "server")]
impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Db(e.to_string())
    }
}
