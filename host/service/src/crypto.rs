//! Encryption at rest of secret settings (ChaCha20-Poly1305) and API-key hashing (SHA-256).

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

/// Environment variable that may hold the store's secret key (64 hex digits) instead of a file.
pub const SECRET_KEY_ENV: &str = "DEVEXT_SECRET_KEY";

/// What can go wrong with the secret key, randomness, encryption or decryption.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The operating system gave no random bytes.
    #[error("no randomness from the OS: {0}")]
    NoRandomness(String),
    /// A key text that is not hexadecimal.
    #[error("the secret key is not hex")]
    NotHex,
    /// A key of another length than 32 bytes.
    #[error("the secret key must be 32 bytes (64 hex digits)")]
    WrongLength,
    /// The key file cannot be read.
    #[error("cannot read the secret key file {}: {source}", .path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file holds no valid key.
    #[error("{}: {source}", .path.display())]
    BadFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with its content.
        source: Box<CryptoError>,
    },
    /// The key file cannot be created (it may exist already: it is never overwritten).
    #[error("cannot create the secret key file {}: {source}", .path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file cannot be written.
    #[error("cannot write the secret key file {}: {source}", .path.display())]
    Write {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Encryption failed.
    #[error("encryption failed")]
    Encrypt,
    /// Sealed data shorter than its nonce.
    #[error("sealed data is truncated")]
    Truncated,
    /// Sealed data that this key cannot open in this context.
    #[error("cannot decrypt: wrong secret key for this store, or the data was altered")]
    Decrypt,
}

/// The store's secret key.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| CryptoError::NoRandomness(e.to_string()))?;
    Ok(buf)
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<SecretKey, CryptoError> {
        Ok(SecretKey(random_bytes::<32>()?))
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Result<SecretKey, CryptoError> {
        let bytes = unhex(text).ok_or(CryptoError::NotHex)?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::WrongLength)?;
        Ok(SecretKey(arr))
    }

    /// Reads the key file.
    pub fn read(path: &Path) -> Result<SecretKey, CryptoError> {
        let text = std::fs::read_to_string(path).map_err(|source| CryptoError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_hex(&text).map_err(|e| CryptoError::BadFile {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Writes a new key file readable by its owner only (mode 0600); never overwrites.
    pub fn create_file(&self, path: &Path) -> Result<(), CryptoError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| CryptoError::Create {
                path: path.to_owned(),
                source,
            })?;
        file.write_all(format!("{}\n", hex(&self.0)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|source| CryptoError::Write {
                path: path.to_owned(),
                source,
            })
    }

    /// Encrypts `plaintext`, bound to `context` (e.g. the org and plugin it belongs to):
    /// nonce (12 bytes) followed by the ciphertext.
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        let nonce_bytes = random_bytes::<12>()?;
        let nonce = Nonce::from_slice(&nonce_bytes);
        let sealed = cipher
            .encrypt(
                nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Decrypts what [`SecretKey::seal`] produced with the same `context`.
    pub fn open(&self, context: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < 12 {
            return Err(CryptoError::Truncated);
        }
        let (nonce, ciphertext) = sealed.split_at(12);
        let cipher = ChaCha20Poly1305::new(Key::from_slice(&self.0));
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// SHA-256 of an API key, as stored.
pub fn key_hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new API key: `dvx_` and 64 hex digits (256 random bits); alphabet `[A-Za-z0-9_]`.
pub fn new_api_key() -> Result<String, CryptoError> {
    Ok(format!("dvx_{}", hex(&random_bytes::<32>()?)))
}

/// Whether `key` has the shape of an API key (`dvx_` and 64 hex digits).
pub fn is_api_key(key: &str) -> bool {
    key.len() == 68 && key.starts_with("dvx_") && key[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_data_opens_only_with_its_key_and_context() {
        let k = SecretKey::generate().unwrap();
        let sealed = k.seal("org1/acme", b"hunter2").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(k.open("org1/acme", &sealed).unwrap(), b"hunter2");
        assert!(
            k.open("org2/acme", &sealed).is_err(),
            "bound to its context"
        );
        let other = SecretKey::generate().unwrap();
        assert!(matches!(
            other.open("org1/acme", &sealed),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            k.open("org1/acme", &sealed[..5]),
            Err(CryptoError::Truncated)
        ));
    }

    #[test]
    fn bad_keys_are_told_apart() {
        assert!(matches!(
            SecretKey::from_hex("zz"),
            Err(CryptoError::NotHex)
        ));
        assert!(matches!(
            SecretKey::from_hex("00ff"),
            Err(CryptoError::WrongLength)
        ));
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        match SecretKey::read(&missing) {
            Err(CryptoError::Read { path, source }) => {
                assert_eq!(path, missing);
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        let bad = dir.path().join("bad.key");
        std::fs::write(&bad, "not a key\n").unwrap();
        let e = SecretKey::read(&bad).unwrap_err();
        assert!(
            matches!(&e, CryptoError::BadFile { source, .. } if matches!(**source, CryptoError::NotHex))
        );
        assert_eq!(
            e.to_string(),
            format!("{}: the secret key is not hex", bad.display())
        );
    }

    #[test]
    fn key_files_are_private_and_round_trip() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let k = SecretKey::generate().unwrap();
        k.create_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(SecretKey::read(&path).unwrap().0, k.0);
        assert!(k.create_file(&path).is_err(), "never overwritten");
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let key = new_api_key().unwrap();
        assert!(key.starts_with("dvx_"));
        assert_eq!(key.len(), 4 + 64);
        assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        assert_ne!(key, new_api_key().unwrap());
        assert_eq!(key_hash(&key).len(), 32);
    }
}
